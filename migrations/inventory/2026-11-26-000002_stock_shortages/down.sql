DROP TABLE stock_shortages;
