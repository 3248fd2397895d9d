//! Router plugin `inputs`: checks every variable of a query or mutation against its
//! declared type, input objects included, before any subgraph is called.
//!
//! hive-router 0.2.19 coerces top-level scalar variables, but passes an input object
//! (`$input: RentInput!`) through unchecked, whatever it holds, and checks `Int` only as a
//! 64-bit number. A wrong value then reached the subgraph and came back as
//! `DOWNSTREAM_SERVICE_ERROR`. Here it is refused by the router with `BAD_USER_INPUT` and
//! a sentence naming the field, following GraphQL's input coercion rules: required
//! fields present and not null, no unknown fields, `Int` within 32 bits, enum values
//! known, a single value where a list is expected. The message never repeats the value
//! (it may be a card number).
//!
//! Subscriptions are not executed through `on_execute`; ours take one `ID`, which the
//! router checks itself.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hive_router::{
    ArcSwap, GraphQLError,
    graphql_tools::parser::schema::{Definition, TypeDefinition},
    graphql_tools::static_graphql::schema::{Document, Type},
    http::StatusCode,
    plugins::{
        hooks::{
            on_execute::{OnExecuteStartHookPayload, OnExecuteStartHookResult},
            on_plugin_init::{OnPluginInitPayload, OnPluginInitResult},
            on_supergraph_load::{OnSupergraphLoadStartHookPayload, OnSupergraphLoadStartHookResult},
        },
        plugin_trait::{RouterPlugin, StartHookPayload},
    },
    query_planner::state::supergraph_state::TypeNode,
    sonic_rs::{JsonContainerTrait, JsonValueTrait, Value},
};

/// A variable's or field's type, with its wrappers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ty {
    Named(String),
    List(Box<Ty>),
    NonNull(Box<Ty>),
}

impl Ty {
    fn from_schema(ty: &Type) -> Self {
        match ty {
            Type::NamedType(name) => Ty::Named(name.clone()),
            Type::ListType(inner) => Ty::List(Box::new(Ty::from_schema(inner))),
            Type::NonNullType(inner) => Ty::NonNull(Box::new(Ty::from_schema(inner))),
        }
    }

    fn from_operation(ty: &TypeNode) -> Self {
        match ty {
            TypeNode::Named(name) => Ty::Named(name.clone()),
            TypeNode::List(inner) => Ty::List(Box::new(Ty::from_operation(inner))),
            TypeNode::NonNull(inner) => Ty::NonNull(Box::new(Ty::from_operation(inner))),
        }
    }
}

impl std::fmt::Display for Ty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ty::Named(name) => f.write_str(name),
            Ty::List(inner) => write!(f, "[{inner}]"),
            Ty::NonNull(inner) => write!(f, "{inner}!"),
        }
    }
}

/// One field of an input object.
#[derive(Debug, Clone)]
struct InputField {
    name: String,
    ty: Ty,
    has_default: bool,
}

/// What the supergraph says about input types.
#[derive(Debug, Default)]
struct InputTypes {
    objects: HashMap<String, Vec<InputField>>,
    enums: HashMap<String, HashSet<String>>,
}

impl InputTypes {
    fn of(document: &Document) -> Self {
        let mut types = InputTypes::default();
        for definition in &document.definitions {
            match definition {
                Definition::TypeDefinition(TypeDefinition::InputObject(object)) => {
                    let fields = object
                        .fields
                        .iter()
                        .map(|field| InputField {
                            name: field.name.clone(),
                            ty: Ty::from_schema(&field.value_type),
                            has_default: field.default_value.is_some(),
                        })
                        .collect();
                    types.objects.insert(object.name.clone(), fields);
                }
                Definition::TypeDefinition(TypeDefinition::Enum(enumeration)) => {
                    let values = enumeration.values.iter().map(|value| value.name.clone()).collect();
                    types.enums.insert(enumeration.name.clone(), values);
                }
                _ => {}
            }
        }
        types
    }

    /// Why `value` does not fit `ty` (at `path`), if it does not.
    fn check(&self, path: &str, ty: &Ty, value: Option<&Value>) -> Result<(), String> {
        let value = value.filter(|value| !value.is_null());
        match (ty, value) {
            (Ty::NonNull(inner), None) => Err(format!("{path} is required (type {inner}!) but is missing or null")),
            (Ty::NonNull(inner), Some(_)) => self.check(path, inner, value),
            (_, None) => Ok(()),
            (Ty::List(inner), Some(value)) => match value.as_array() {
                Some(items) => {
                    for (index, item) in items.iter().enumerate() {
                        self.check(&format!("{path}[{index}]"), inner, Some(item))?;
                    }
                    Ok(())
                }
                // A single value stands for a list of one.
                None => self.check(path, inner, Some(value)),
            },
            (Ty::Named(name), Some(value)) => self.check_named(path, name, value),
        }
    }

    fn check_named(&self, path: &str, name: &str, value: &Value) -> Result<(), String> {
        let kind = kind_of(value);
        let fits = match name {
            "Int" => value.as_i64().is_some_and(|number| i32::try_from(number).is_ok()),
            "Float" => value.is_number(),
            "String" => value.is_str(),
            "Boolean" => value.is_boolean(),
            "ID" => value.is_str() || value.as_i64().is_some(),
            _ => {
                if let Some(values) = self.enums.get(name) {
                    value.as_str().is_some_and(|text| values.contains(text))
                } else if let Some(fields) = self.objects.get(name) {
                    return self.check_object(path, name, fields, value);
                } else {
                    // A custom scalar (DateTime): its own service parses it.
                    true
                }
            }
        };
        if fits {
            return Ok(());
        }
        let expected = match name {
            "Int" => "an Int (a whole number from -2147483648 to 2147483647)".to_owned(),
            "Float" => "a Float (a number)".to_owned(),
            "String" => "a String".to_owned(),
            "Boolean" => "a Boolean (true or false)".to_owned(),
            "ID" => "an ID (a string)".to_owned(),
            enumeration => {
                let mut values: Vec<&String> = self.enums.get(enumeration).into_iter().flatten().collect();
                values.sort();
                let listed: Vec<&str> = values.iter().map(|value| value.as_str()).collect();
                format!("one of {} ({enumeration})", listed.join(", "))
            }
        };
        Err(format!("{path} must be {expected}, not {kind}"))
    }

    fn check_object(&self, path: &str, name: &str, fields: &[InputField], value: &Value) -> Result<(), String> {
        let Some(object) = value.as_object() else {
            return Err(format!("{path} must be an object of type {name}, not {}", kind_of(value)));
        };
        for (key, _) in object.iter() {
            if !fields.iter().any(|field| field.name == key) {
                return Err(format!("{path}.{key} is not a field of {name}"));
            }
        }
        for field in fields {
            let given = object.get(&field.name);
            if given.is_none() && field.has_default {
                continue;
            }
            self.check(&format!("{path}.{}", field.name), &field.ty, given)?;
        }
        Ok(())
    }
}

/// What a JSON value is, in words, without saying what it holds.
fn kind_of(value: &Value) -> &'static str {
    if value.is_str() {
        "a string"
    } else if value.is_boolean() {
        "a boolean"
    } else if value.as_i64().is_some() || value.as_u64().is_some() {
        "an integer out of range or of the wrong type"
    } else if value.is_number() {
        "a number"
    } else if value.is_array() {
        "a list"
    } else if value.is_object() {
        "an object"
    } else {
        "null"
    }
}

pub struct Inputs {
    types: ArcSwap<InputTypes>,
}

#[hive_router::async_trait]
impl RouterPlugin for Inputs {
    /// The key under `plugins:` in router.config.yaml.
    fn plugin_name() -> &'static str {
        "inputs"
    }

    /// Nothing to configure.
    type Config = ();

    fn on_plugin_init(payload: OnPluginInitPayload<Self>) -> OnPluginInitResult<Self> {
        payload.initialize_plugin(Inputs { types: ArcSwap::from_pointee(InputTypes::default()) })
    }

    fn on_supergraph_reload<'exec>(
        &'exec self,
        payload: OnSupergraphLoadStartHookPayload,
    ) -> OnSupergraphLoadStartHookResult<'exec> {
        self.types.store(Arc::new(InputTypes::of(&payload.new_ast)));
        payload.proceed()
    }

    async fn on_execute<'exec>(
        &'exec self,
        payload: OnExecuteStartHookPayload<'exec>,
    ) -> OnExecuteStartHookResult<'exec> {
        let types = self.types.load();
        let values = payload.variable_values.as_ref();
        for definition in payload.operation_for_plan.variable_definitions.iter().flatten() {
            let ty = Ty::from_operation(&definition.variable_type);
            let value = values.and_then(|values| values.get(&definition.name));
            // An absent variable with a default takes its default, which the router checked.
            if value.is_none() && definition.default_value.is_some() {
                continue;
            }
            if let Err(reason) = types.check(&format!("${}", definition.name), &ty, value) {
                let error = GraphQLError::from_message_and_code(
                    format!("the variables do not fit the operation: {reason}"),
                    "BAD_USER_INPUT",
                );
                return payload.end_with_graphql_error(error, StatusCode::OK);
            }
        }
        payload.proceed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types() -> InputTypes {
        let schema = r#"
            enum RentalStatus { ACCEPTED ACTIVE CANCELLED }
            input RentInput { productId: ID! months: Int! deliveryAddress: String! cardNumber: String!
                              idempotencyKey: String! note: String = "none" }
            input Filter { statuses: [RentalStatus!] }
        "#;
        let document: Document =
            hive_router::graphql_tools::parser::parse_schema(schema).expect("schema").into_static();
        InputTypes::of(&document)
    }

    fn value(json: &str) -> Value {
        hive_router::sonic_rs::from_str(json).expect("json")
    }

    fn rent_input() -> Ty {
        Ty::NonNull(Box::new(Ty::Named("RentInput".into())))
    }

    const GOOD: &str =
        r#"{"productId":"p","months":12,"deliveryAddress":"a","cardNumber":"4242","idempotencyKey":"k"}"#;

    #[test]
    fn a_well_formed_input_object_passes() {
        assert_eq!(types().check("$input", &rent_input(), Some(&value(GOOD))), Ok(()));
    }

    #[test]
    fn wrong_types_inside_an_input_object_are_named_without_their_value() {
        let types = types();
        let cases = [
            (GOOD.replace("12", "\"twelve\""), "$input.months must be an Int"),
            (GOOD.replace("12", "2147483648"), "$input.months must be an Int"),
            (GOOD.replace(r#","idempotencyKey":"k""#, ""), "$input.idempotencyKey is required"),
            (GOOD.replace(r#""months""#, r#""monthz""#), "$input.monthz is not a field of RentInput"),
            (r#""the whole input""#.to_owned(), "$input must be an object of type RentInput, not a string"),
            (GOOD.replace(r#""4242""#, "4242424242424242"), "$input.cardNumber must be a String"),
        ];
        for (input, expected) in cases {
            let refused = types.check("$input", &rent_input(), Some(&value(&input))).unwrap_err();
            assert!(refused.starts_with(expected), "{refused} should start with {expected}");
            assert!(!refused.contains("4242424242424242"), "the value is never repeated: {refused}");
        }
    }

    #[test]
    fn lists_enums_and_nulls_follow_the_coercion_rules() {
        let types = types();
        let filter = Ty::Named("Filter".into());
        assert_eq!(types.check("$f", &filter, Some(&value(r#"{"statuses":["ACTIVE"]}"#))), Ok(()));
        assert_eq!(types.check("$f", &filter, Some(&value(r#"{"statuses":"ACTIVE"}"#))), Ok(()), "one for a list");
        assert!(types.check("$f", &filter, Some(&value(r#"{"statuses":["LOST"]}"#))).unwrap_err().contains("one of"));
        assert!(types.check("$f", &filter, Some(&value(r#"{"statuses":[null]}"#))).is_err());
        assert_eq!(types.check("$f", &filter, None), Ok(()), "a nullable variable may be absent");
        assert!(types.check("$input", &rent_input(), None).is_err());
    }
}
