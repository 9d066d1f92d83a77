//! Client tests against the Polar test server.
