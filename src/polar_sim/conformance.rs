//! Checks that the test server answers in the shapes Polar's OpenAPI
//! description declares, with a small JSON Schema checker for the keywords
//! that description uses.
//!
//! Takes: `tests/fixtures/polar/openapi-subset.json` and live responses of a
//! [`super::PolarSim`]. Gives: test failures listing every mismatch with its
//! JSON path. Never changes the server. Unknown keywords are annotations
//! (`title`, `description`, `examples`, …) and are ignored.

use serde_json::{Map, Value, json};

use super::{PolarSim, Seed, SeedCustomer, SeedDispute, SeedOrder, SimConfig};

const SPEC: &str = include_str!("../../tests/fixtures/polar/openapi-subset.json");

/// Validates `value` against `schema`, resolving `$ref`s in `spec`.
struct Checker<'a> {
    spec: &'a Value,
    errors: Vec<String>,
}

impl<'a> Checker<'a> {
    fn new(spec: &'a Value) -> Self {
        Self {
            spec,
            errors: Vec::new(),
        }
    }

    fn resolve(&self, reference: &str) -> &'a Value {
        let pointer = reference.trim_start_matches('#');
        self.spec
            .pointer(pointer)
            .unwrap_or_else(|| panic!("unresolvable $ref {reference}"))
    }

    /// True when `value` matches; mismatches are appended to `errors`.
    fn check(&mut self, schema: &'a Value, value: &Value, path: &str) -> bool {
        let before = self.errors.len();
        let Some(schema) = schema.as_object() else {
            return true;
        };
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let target = self.resolve(reference);
            self.check(target, value, path);
        }
        if let Some(kind) = schema.get("type").and_then(Value::as_str)
            && !type_matches(kind, value)
        {
            self.errors
                .push(format!("{path}: expected {kind}, got {value}"));
            return false;
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            self.errors.push(format!("{path}: {value} not in enum"));
        }
        if let Some(constant) = schema.get("const")
            && constant != value
        {
            self.errors
                .push(format!("{path}: {value} is not {constant}"));
        }
        if let Some(format) = schema.get("format").and_then(Value::as_str)
            && let Some(text) = value.as_str()
        {
            let ok = match format {
                "date-time" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
                "uuid4" | "uuid" => {
                    uuid::Uuid::parse_str(text).is_ok() && text == text.to_lowercase()
                }
                _ => true,
            };
            if !ok {
                self.errors
                    .push(format!("{path}: {text:?} is not a {format}"));
            }
        }
        if let Some(text) = value.as_str() {
            let length = text.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && length < min
            {
                self.errors.push(format!("{path}: shorter than {min}"));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && length > max
            {
                self.errors.push(format!("{path}: longer than {max}"));
            }
        }
        if let Some(bound) = schema.get("exclusiveMinimum").and_then(Value::as_f64)
            && value.as_f64().is_some_and(|n| n <= bound)
        {
            self.errors.push(format!("{path}: not above {bound}"));
        }
        if let Some(options) = schema.get("anyOf").and_then(Value::as_array) {
            let matched = options
                .iter()
                .any(|option| self.quietly(option, value, path));
            if !matched {
                self.errors
                    .push(format!("{path}: matches no anyOf option: {value}"));
            }
        }
        if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
            let matched = options
                .iter()
                .filter(|option| self.quietly(option, value, path))
                .count();
            if matched != 1 {
                self.errors
                    .push(format!("{path}: matches {matched} oneOf options"));
            }
        }
        if let Some(object) = value.as_object() {
            self.check_object(schema, object, path);
        }
        if let Some(array) = value.as_array() {
            self.check_array(schema, array, path);
        }
        self.errors.len() == before
    }

    /// Checks without recording errors (for anyOf / oneOf alternatives).
    fn quietly(&mut self, schema: &'a Value, value: &Value, path: &str) -> bool {
        let saved = std::mem::take(&mut self.errors);
        let ok = self.check(schema, value, path);
        self.errors = saved;
        ok
    }

    fn check_object(
        &mut self,
        schema: &'a Map<String, Value>,
        object: &Map<String, Value>,
        path: &str,
    ) {
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    self.errors.push(format!("{path}: missing required {name}"));
                }
            }
        }
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
            && object.len() as u64 > max
        {
            self.errors
                .push(format!("{path}: more than {max} properties"));
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, item) in object {
            let item_path = format!("{path}.{name}");
            if let Some(names) = schema.get("propertyNames") {
                self.check(names, &Value::String(name.clone()), &item_path);
            }
            match properties.and_then(|p| p.get(name)) {
                Some(property) => {
                    self.check(property, item, &item_path);
                }
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        self.errors.push(format!("{item_path}: not allowed"))
                    }
                    Some(additional @ Value::Object(_)) => {
                        self.check(additional, item, &item_path);
                    }
                    _ => {}
                },
            }
        }
    }

    fn check_array(&mut self, schema: &'a Map<String, Value>, array: &[Value], path: &str) {
        let length = array.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && length < min
        {
            self.errors.push(format!("{path}: fewer than {min} items"));
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && length > max
        {
            self.errors.push(format!("{path}: more than {max} items"));
        }
        let prefix = schema.get("prefixItems").and_then(Value::as_array);
        for (index, item) in array.iter().enumerate() {
            let item_path = format!("{path}[{index}]");
            match prefix.and_then(|p| p.get(index)) {
                Some(item_schema) => {
                    self.check(item_schema, item, &item_path);
                }
                None => {
                    if let Some(item_schema) = schema.get("items") {
                        self.check(item_schema, item, &item_path);
                    }
                }
            }
        }
    }
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn spec() -> Value {
    serde_json::from_str(SPEC).expect("the OpenAPI fixture is JSON")
}

/// Errors of `value` against a component schema.
fn errors_against_component(spec: &Value, component: &str, value: &Value) -> Vec<String> {
    let schema = spec
        .pointer(&format!("/components/schemas/{component}"))
        .unwrap_or_else(|| panic!("no component {component}"));
    let mut checker = Checker::new(spec);
    checker.check(schema, value, component);
    checker.errors
}

/// Errors of `value` against the schema the spec declares for this path,
/// method and status.
fn errors_against_response(
    spec: &Value,
    path: &str,
    method: &str,
    status: u16,
    value: &Value,
) -> Vec<String> {
    let escaped = path.replace('~', "~0").replace('/', "~1");
    let pointer =
        format!("/paths/{escaped}/{method}/responses/{status}/content/application~1json/schema");
    let schema = spec
        .pointer(&pointer)
        .unwrap_or_else(|| panic!("the spec declares no {status} for {method} {path}"));
    let mut checker = Checker::new(spec);
    checker.check(schema, value, &format!("{method} {path} {status}"));
    checker.errors
}

#[test]
fn the_checker_rejects_what_the_spec_forbids() {
    let spec = spec();
    let valid = json!({"total_count": 3, "max_page": 1});
    assert!(errors_against_component(&spec, "Pagination", &valid).is_empty());
    let cases = [
        (
            "Pagination",
            json!({"total_count": 3}),
            "missing required max_page",
        ),
        (
            "Pagination",
            json!({"total_count": "3", "max_page": 1}),
            "expected integer",
        ),
        ("RefundStatus", json!("reversed"), "not in enum"),
        (
            "RefundedAlready",
            json!({"error": "Other", "detail": "x"}),
            "is not",
        ),
        (
            "ValidationError",
            json!({"loc": [{}], "msg": "m", "type": "t"}),
            "matches no anyOf",
        ),
        ("MetadataOutputType", json!({"k": null}), "matches no anyOf"),
        (
            "RefundCreate",
            json!({"order_id": "not-a-uuid", "reason": "other", "amount": 0}),
            "is not a uuid4",
        ),
        (
            "RefundCreate",
            json!({"order_id": "22222222-2222-4222-8222-222222222222", "reason": "other", "amount": 0}),
            "not above 0",
        ),
        (
            "Customer",
            json!({"type": "individual"}),
            "matches 0 oneOf options",
        ),
    ];
    for (component, value, expected) in cases {
        let errors = errors_against_component(&spec, component, &value);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{component} {value}: expected {expected:?} in {errors:?}"
        );
    }
}

fn seed() -> Seed {
    Seed {
        customers: vec![SeedCustomer {
            id: Some("33333333-3333-4333-8333-333333333333".into()),
            email: "Aiko@Example.com".into(),
            name: Some("Aiko".into()),
            ..SeedCustomer::default()
        }],
        orders: vec![
            SeedOrder {
                id: Some("22222222-2222-4222-8222-222222222222".into()),
                customer_id: "33333333-3333-4333-8333-333333333333".into(),
                net_amount: 900,
                tax_amount: 171,
                currency: "EUR".into(),
                status: "paid".into(),
                invoice_number: Some("ANUMI-AAAAAAAB-0001".into()),
                receipt_number: Some("RCPT-AAAAAAAB-0001".into()),
                product_name: "Starter 50".into(),
                created_at: None,
                has_payment: true,
            },
            SeedOrder {
                id: Some("44444444-4444-4444-8444-444444444444".into()),
                customer_id: "33333333-3333-4333-8333-333333333333".into(),
                net_amount: 100,
                tax_amount: 0,
                currency: "usd".into(),
                status: "paid".into(),
                invoice_number: None,
                receipt_number: None,
                product_name: "Mini".into(),
                created_at: None,
                has_payment: true,
            },
        ],
        disputes: vec![SeedDispute {
            id: None,
            order_id: "44444444-4444-4444-8444-444444444444".into(),
            status: "needs_response".into(),
            amount: None,
            reason: Some("fraudulent".into()),
        }],
    }
}

#[tokio::test]
async fn every_sim_response_conforms_to_the_declared_schema() {
    crate::act::polar::install_crypto_provider();
    let sim = PolarSim::start(SimConfig {
        seed: seed(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let base = sim.base_url();
    let auth = format!("Bearer {}", sim.token());
    let order = "22222222-2222-4222-8222-222222222222";
    let refund_body = json!({"order_id": order, "reason": "customer_request", "amount": 900, "metadata": {"refundd_key": "r_1"}});
    // (method, spec path, url suffix, body, expected status)
    let calls: Vec<(&str, &str, String, Option<Value>, u16)> = vec![
        (
            "get",
            "/v1/orders/{id}",
            format!("/v1/orders/{order}"),
            None,
            200,
        ),
        (
            "get",
            "/v1/orders/{id}",
            "/v1/orders/55555555-5555-4555-8555-555555555555".into(),
            None,
            404,
        ),
        (
            "get",
            "/v1/orders/{id}",
            "/v1/orders/not-a-uuid".into(),
            None,
            422,
        ),
        (
            "get",
            "/v1/orders/",
            "/v1/orders/?customer_id=33333333-3333-4333-8333-333333333333".into(),
            None,
            200,
        ),
        (
            "get",
            "/v1/orders/",
            "/v1/orders/?limit=101".into(),
            None,
            422,
        ),
        (
            "get",
            "/v1/customers/",
            "/v1/customers/?email=aiko%40example.com".into(),
            None,
            200,
        ),
        (
            "get",
            "/v1/customers/{id}",
            "/v1/customers/33333333-3333-4333-8333-333333333333".into(),
            None,
            200,
        ),
        (
            "post",
            "/v1/refunds/",
            "/v1/refunds/".into(),
            Some(refund_body),
            201,
        ),
        (
            "post",
            "/v1/refunds/",
            "/v1/refunds/".into(),
            Some(json!({"amount": -1})),
            422,
        ),
        (
            "get",
            "/v1/refunds/",
            format!("/v1/refunds/?order_id={order}"),
            None,
            200,
        ),
        ("get", "/v1/disputes/", "/v1/disputes/".into(), None, 200),
    ];
    let spec = spec();
    for (method, spec_path, suffix, body, status) in calls {
        let url = format!("{base}{suffix}");
        let request = match &body {
            Some(body) => http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_string()),
            None => http.get(&url),
        };
        let response = request.header("authorization", &auth).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {suffix}");
        let value: Value = response.json().await.unwrap();
        let errors = errors_against_response(&spec, spec_path, method, status, &value);
        assert!(errors.is_empty(), "{method} {suffix}: {errors:#?}");
        if let Some(items) = value.get("items").and_then(Value::as_array) {
            assert!(
                !items.is_empty(),
                "{method} {suffix} listed nothing to check"
            );
        }
    }
    // After the full refund succeeds, a second one is `RefundedAlready` as declared.
    let refund_id = sim.refunds()[0].id.clone();
    assert!(sim.settle_refund(&refund_id));
    let again = http
        .post(format!("{base}/v1/refunds/"))
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(json!({"order_id": order, "reason": "other", "amount": 1}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 403);
    let value: Value = again.json().await.unwrap();
    let errors = errors_against_response(&spec, "/v1/refunds/", "post", 403, &value);
    assert!(errors.is_empty(), "{errors:#?}");
    let settled: Value = http
        .get(format!("{base}/v1/orders/{order}"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(errors_against_response(&spec, "/v1/orders/{id}", "get", 200, &settled).is_empty());
    assert_eq!(settled["status"], "refunded");
    assert_eq!(settled["currency"], "eur");
    sim.shutdown().await;
}

#[test]
fn the_example_seed_file_loads() {
    let text = include_str!("../../tests/fixtures/polar/seed.json");
    let seed: Seed = serde_json::from_str(text).unwrap();
    let mut store = super::state::Store::default();
    store.seed(&seed, chrono::Utc::now()).unwrap();
    assert!(!store.customers.is_empty());
    assert!(!store.orders.is_empty());
}
