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
  ];
})();
