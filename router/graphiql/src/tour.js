// The tour of README.md ("A tour in GraphiQL"), preloaded as GraphiQL tabs on a
// browser's first visit. GraphiQL names a tab after its operation, so each operation
// has a name and the comment on its first line says where it sits in the tour.
//
// `role` says which token the tab's Authorization header carries when the page has
// more than one (see app.js): the step needs a customer's or an operator's token, or
// either.
//
// Every selection of an entity (Product, Rental, Payment, Delivery) selects its `id`,
// so that normalizing caches (Apollo Client, urql's graphcache) can use the same
// operations unchanged.
"use strict";

(function () {
  var RENTAL_ID = "<the rental id from the Rent tab's result>";
  var DELIVERY_ID = "<the delivery id from the DeliveryQueue tab's result>";
  var VISIT_ID = "<a visit id from the VisitQueue tab's result>";

  // A fresh key per browser, so that the first rental of every newcomer is a new one.
  // Retrying with the same key returns the same rental and never charges twice.
  function idempotencyKey() {
    var bytes = new Uint8Array(6);
    crypto.getRandomValues(bytes);
    return "tour-" + Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  function json(value) {
    return JSON.stringify(value, null, 2);
  }

  globalThis.graphiqlTour = [
    {
      role: "any",
      query: [
        "# 1 · The catalog (any signed-in user).",
        "# Run it with ▶ or Ctrl-Enter. The book icon on the",
        "# left documents every type and field.",
        "query Catalog {",
        "  products(first: 10) {",
        "    edges { node { id name description monthlyFee stock } }",
        "    pageInfo { hasNextPage endCursor }",
        "  }",
        "}",
        "",
      ].join("\n"),
    },
    {
      role: "customer",
      query: [
        "# 2 · Rent a dispenser (customer token). The first",
        "# month is charged at once: card 4242424242424242",
        "# approves, 4000000000000002 declines. The same",
        "# idempotencyKey returns the same rental and never",
        "# charges twice; change it to rent another one.",
        "# FollowLive and Cancel need the rental's \"id\".",
        "mutation Rent($input: RentInput!) {",
        "  rent(input: $input) {",
        "    id status monthlyFee",
        "    product { id name }",
        "    payment { id amount cardLast4 status }",
        "  }",
        "}",
        "",
      ].join("\n"),
      variables: function () {
        return json({
          input: {
            productId: "0192f1a4-0000-7000-8000-000000000001",
            months: 12,
            deliveryAddress: "12 Teheran-ro, Gangnam-gu, Seoul",
            cardNumber: "4242424242424242",
            idempotencyKey: idempotencyKey(),
          },
        });
      },
    },
    {
      role: "operator",
      query: [
        "# 3 · The delivery queue (operator token). A delivery",
        "# is requested a moment after the rental is paid.",
        "# Ship and Complete need the delivery's \"id\".",
        "query DeliveryQueue {",
        "  deliveries(status: REQUESTED, first: 20) {",
        "    edges {",
        "      node {",
        "        id status address waitingForStock",
        "        product { id name stock }",
        "        rental { id customerId }",
        "      }",
        "    }",
        "  }",
        "}",
        "",
      ].join("\n"),
    },
    {
      role: "operator",
      query: [
        "# 4 · Ship it (operator token): REQUESTED → SHIPPING.",
        "# The product's stock goes down by one a moment later.",
        "# Start the FollowLive tab first to watch it live.",
        "mutation Ship($id: ID!) {",
        "  startDelivery(id: $id) { id status shippedAt }",
        "}",
        "",
      ].join("\n"),
      variables: json({ id: DELIVERY_ID }),
    },
    {
      role: "operator",
      query: [
        "# 5 · Deliver it (operator token): SHIPPING → DELIVERED.",
        "# The rental becomes ACTIVE; its timeline reads PAID,",
        "# DELIVERY_REQUESTED, SHIPPED, DELIVERED.",
        "mutation Complete($id: ID!) {",
        "  completeDelivery(id: $id) { id status deliveredAt }",
        "}",
        "",
      ].join("\n"),
      variables: json({ id: DELIVERY_ID }),
    },
    {
      role: "customer",
      query: [
        "# 6 · Follow the delivery live (its customer or an",
        "# operator). The first event is the current status,",
        "# then each change as it happens (Server-Sent Events),",
        "# until DELIVERED or CANCELLED. Run it, then Ship and",
        "# Complete in their tabs.",
        "subscription FollowLive($id: ID!) {",
        "  deliveryStatusChanged(rentalId: $id) {",
        "    id status shippedAt deliveredAt waitingForStock",
        "    rental { id product { id name } }",
        "  }",
        "}",
        "",
      ].join("\n"),
      variables: json({ id: RENTAL_ID }),
    },
    {
      role: "customer",
      query: [
        "# 7 · Or cancel before delivery (its customer or an",
        "# operator): the delivery is cancelled, the payment",
        "# refunded and a shipped unit restocked, each a moment",
        "# later. Rent a second dispenser to try it.",
        "mutation Cancel($id: ID!) {",
        "  cancelRental(id: $id) { id status }",
        "}",
        "",
      ].join("\n"),
      variables: json({ id: RENTAL_ID }),
    },
    {
      role: "customer",
      query: [
        "# 8 · A customer's rentals with their history",
        "# (customer token).",
        "query MyRentals {",
        "  myRentals(first: 5) {",
        "    edges {",
        "      node {",
        "        id status months monthlyFee createdAt",
        "        timeline { kind at }",
        "        product { id name stock }",
        "        payment { id amount cardLast4 status }",
        "        delivery { id status requestedAt shippedAt }",
        "      }",
        "    }",
        "  }",
        "}",
        "",
      ].join("\n"),
    },
    // The contract: month 2 onwards, a failing card and its recovery, extension, the
    // end. With `MONTH_SECONDS=60 make run` a month lasts a minute, so a year of a
    // rental plays out in GraphiQL in twelve.
    {
      role: "any",
      query: [
        "# 9 · Watch the contract live (its customer or an",
        "# operator): each month's invoice, a decline, the",
        "# card updated, an extension, care visits, the end.",
        "# The first event is where the rental stands now.",
        "subscription RentalActivity($id: ID!) {",
        "  rentalActivity(rentalId: $id) {",
        "    kind at period",
        "    invoice { id period amount status attempts failureReason }",
        "    visit { id kind status scheduledFor }",
        "    rental {",
        "      id status",
        "      term { startsOn endsOn periodsPaid nextChargeOn }",
        "      product { id name }",
        "    }",
        "  }",
        "}",
        "",
      ].join("\n"),
      variables: json({ id: RENTAL_ID }),
    },
    {
      role: "any",
      query: [
        "# 10 · The contract: term, card on file, invoices,",
        "# visits (its customer or an operator). The term",
        "# starts at delivery; period 1 is the charge at rent.",
        "query Contract($id: ID!) {",
        "  rental(id: $id) {",
        "    id status months monthlyFee endReason terminationFee",
        "    term { startsOn endsOn periodsPaid nextChargeOn }",
        "    paymentMethod { brand last4 expMonth expYear }",
        "    invoices { id kind period periodStart amount status attempts paidAt failureReason }",
        "    visits { id kind status scheduledFor doneAt }",
        "  }",
        "}",
        "",
      ].join("\n"),
      variables: json({ id: RENTAL_ID }),
    },
    {
      role: "operator",
      query: [
        "# 11 · Every failed invoice, for the accounts team",
        "# (operator token). Rent with 4000000000000341: it is",
        "# accepted at rent and declines every later month, so",
        "# the rental goes PAST_DUE and is retried after 1, 3",
        "# and 7 days.",
        "query FailedInvoices {",
        "  invoices(status: FAILED, first: 20) {",
        "    edges {",
        "      node {",
        "        id period amount attempts nextAttemptAt failureReason",
        "        rental { id customerId status }",
        "      }",
        "    }",
        "  }",
        "}",
        "",
      ].join("\n"),
    },
    {
      role: "customer",
      query: [
        "# 12 · Put a working card on file (the rental's",
        "# customer): a past-due invoice is charged to it at",
        "# once, and the rental is ACTIVE again.",
        "mutation UpdateCard($id: ID!) {",
        "  updatePaymentMethod(rentalId: $id, cardNumber: \"4242424242424242\", expMonth: 12, expYear: 2031) {",
        "    brand last4 expMonth expYear",
        "  }",
        "}",
        "",
      ].join("\n"),
      variables: json({ id: RENTAL_ID }),
    },
    {
      role: "customer",
      query: [
        "# 13 · Or retry one failed invoice now (its customer",
        "# or an operator; the invoice's id from Contract).",
        "mutation PayInvoice($id: ID!) {",
        "  payInvoice(id: $id) { id period amount status attempts paidAt failureReason }",
        "}",
        "",
      ].join("\n"),
      variables: json({ id: "<an invoice id from the Contract tab's result>" }),
    },
    {
      role: "customer",
      query: [
        "# 14 · Extend the term (the customer, while ACTIVE):",
        "# 1 to 60 more months at the same fee; care visits",
        "# are planned for them.",
        "mutation Extend($id: ID!) {",
        "  extendRental(id: $id, months: 6) {",
        "    id months status",
        "    term { endsOn nextChargeOn }",
        "  }",
        "}",
        "",
      ].join("\n"),
      variables: json({ id: RENTAL_ID }),
    },
    {
      role: "customer",
      query: [
        "# 15 · End it early (the customer or an operator,",
        "# after delivery): 60 % of the daily fee for the days",
        "# left, charged at once; no later month is charged;",
        "# a pickup is scheduled.",
        "mutation Terminate($id: ID!) {",
        "  terminateRental(id: $id) {",
        "    id status endReason terminationFee endedAt",
        "  }",
        "}",
        "",
      ].join("\n"),
      variables: json({ id: RENTAL_ID }),
    },
    // The technician's day: the queue, a care visit or a pickup, stock going back up.
    {
      role: "operator",
      query: [
        "# 16 · The technicians' queue, oldest due first",
        "# (operator token), with the product's stock and the",
        "# rental from their own subgraphs. A pickup appears",
        "# when a rental ends after delivery.",
        "query VisitQueue {",
        "  visits(status: SCHEDULED, first: 20) {",
        "    edges {",
        "      node {",
        "        id kind status scheduledFor address",
        "        product { id name stock }",
        "        rental { id customerId status }",
        "      }",
        "    }",
        "  }",
        "}",
        "",
      ].join("\n"),
    },
    {
      role: "operator",
      query: [
        "# 17 · Start a visit (operator token, a visit's id",
        "# from VisitQueue): SCHEDULED → IN_PROGRESS.",
        "mutation StartVisit($id: ID!) {",
        "  startVisit(id: $id) { id kind status startedAt }",
        "}",
        "",
      ].join("\n"),
      variables: json({ id: VISIT_ID }),
    },
    {
      role: "operator",
      query: [
        "# 18 · Complete it (operator token): a care visit is",
        "# DONE; a pickup brings the unit home, and the",
        "# product's stock goes up by one (RETURNED in the",
        "# rental's timeline).",
        "mutation CompleteVisit($id: ID!, $notes: String) {",
        "  completeVisit(id: $id, notes: $notes) {",
        "    id kind status doneAt notes",
        "    product { id name stock }",
        "  }",
        "}",
        "",
      ].join("\n"),
      variables: json({ id: VISIT_ID, notes: "Filters changed, unit cleaned." }),
    },
  ];
})();
