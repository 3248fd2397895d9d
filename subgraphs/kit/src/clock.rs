//! The one clock every time rule of a contract reads: when a period starts, when the
//! term ends, how many days are left, when a declined charge is tried again.
//!
//! Production counts in calendar months (a term that starts on the 31st has its later
//! periods start on the last day of shorter months). One setting, `MONTH_SECONDS`,
//! makes a month that many seconds long instead (and a day a thirtieth of it), so the
//! tests run a whole contract in seconds and a person can watch a year of a rental in
//! a couple of minutes. The same code runs either way: only the length of a month
//! differs.

use chrono::{DateTime, Duration, Months, Utc};

/// How long a month is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonthLength {
    /// Calendar months; a day is 24 hours.
    Calendar,
    /// A month of this many seconds; a day is a thirtieth of it.
    Seconds(u32),
}

/// The shortest month the short setting allows, in seconds.
pub const MIN_MONTH_SECONDS: u32 = 3;

/// Month and day arithmetic under one [`MonthLength`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    pub month: MonthLength,
}

impl Calendar {
    pub const CALENDAR: Calendar = Calendar { month: MonthLength::Calendar };

    /// A calendar whose month lasts `seconds` (at least 3, so a day is 100 ms or more).
    pub fn short(seconds: u32) -> Self {
        Self { month: MonthLength::Seconds(seconds.max(MIN_MONTH_SECONDS)) }
    }

    /// `months` months after `start`. Counted from `start` every time, never chained, so
    /// a term that starts on January 31st has periods on February 28th and March 31st.
    pub fn months_after(&self, start: DateTime<Utc>, months: i32) -> DateTime<Utc> {
        let months = months.max(0) as u32;
        match self.month {
            MonthLength::Calendar => {
                start.checked_add_months(Months::new(months)).expect("a contract's dates are far from the end of time")
            }
            MonthLength::Seconds(seconds) => start + Duration::seconds(i64::from(seconds) * i64::from(months)),
        }
    }

    /// The length of a day.
    pub fn day(&self) -> Duration {
        match self.month {
            MonthLength::Calendar => Duration::days(1),
            MonthLength::Seconds(seconds) => Duration::milliseconds(i64::from(seconds) * 1000 / 30),
        }
    }

    /// `days` days after `start` (may be fractional in the short setting).
    pub fn days_after(&self, start: DateTime<Utc>, days: u32) -> DateTime<Utc> {
        start + self.day() * days as i32
    }

    /// Whole days from `from` to `to` (a started day counts as used), never negative.
    pub fn whole_days_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        let span = (to - from).num_milliseconds().max(0);
        span / self.day().num_milliseconds().max(1)
    }

    /// How often a scheduler should look for due work: a fraction of a day, between 50 ms
    /// and a second.
    pub fn tick(&self) -> std::time::Duration {
        let fraction = self.day().num_milliseconds() / 20;
        std::time::Duration::from_millis(fraction.clamp(50, 1000) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a time")
    }

    #[test]
    fn calendar_months_land_on_the_last_day_of_shorter_months_without_drifting() {
        let calendar = Calendar::CALENDAR;
        let start = at("2027-01-31T10:00:00Z");
        assert_eq!(calendar.months_after(start, 1), at("2027-02-28T10:00:00Z"));
        assert_eq!(calendar.months_after(start, 2), at("2027-03-31T10:00:00Z"));
        assert_eq!(calendar.months_after(start, 3), at("2027-04-30T10:00:00Z"));
        assert_eq!(calendar.months_after(at("2028-01-31T00:00:00Z"), 1), at("2028-02-29T00:00:00Z"), "leap year");
        assert_eq!(calendar.months_after(start, 12), at("2028-01-31T10:00:00Z"));
    }

    #[test]
    fn a_short_month_is_that_many_seconds_and_a_day_a_thirtieth_of_it() {
        let calendar = Calendar::short(60);
        let start = at("2027-01-31T10:00:00Z");
        assert_eq!(calendar.months_after(start, 2), at("2027-01-31T10:02:00Z"));
        assert_eq!(calendar.day(), Duration::seconds(2));
        assert_eq!(calendar.days_after(start, 3), at("2027-01-31T10:00:06Z"));
        assert_eq!(calendar.whole_days_between(start, at("2027-01-31T10:00:07Z")), 3);
        assert_eq!(calendar.whole_days_between(at("2027-01-31T10:00:07Z"), start), 0);
    }

    #[test]
    fn days_are_whole_days() {
        let calendar = Calendar::CALENDAR;
        let start = at("2027-03-01T12:00:00Z");
        assert_eq!(calendar.whole_days_between(start, at("2027-03-31T11:59:59Z")), 29);
        assert_eq!(calendar.whole_days_between(start, at("2027-03-31T12:00:00Z")), 30);
    }
}
