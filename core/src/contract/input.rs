//! One value against its declared input: a runbook's default, a value given
//! with `--input`, or an argument of a model's tool call.
//!
//! Pure: it reads no file and touches no database.

use super::model::{InputSpec, InputType};
use super::parse_duration;
use crate::sql::params;

/// Why a value does not fit its input. The message names the value, never
/// the input (the caller knows which input it checked and says so).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("{value} is below the minimum {min}")]
    BelowMinimum { value: f64, min: f64 },
    #[error("{value} is above the maximum {max}")]
    AboveMaximum { value: f64, max: f64 },
    /// Not a SQL identifier ward can quote; the reason says why.
    #[error(transparent)]
    Identifier(#[from] crate::sql::params::IdentifierError),
    #[error("`{0}` is not a duration (e.g. 5s, 10m, 1h)")]
    Duration(String),
    #[error("`{value}` is not one of {}", allowed.join(", "))]
    NotAllowed { value: String, allowed: Vec<String> },
    #[error("expected {expected} but found {found}")]
    WrongType { expected: String, found: String },
}

/// Checks a value (a default, or one given with `--input`) against its input.
pub fn check_value(input: &InputSpec, value: &serde_yaml::Value) -> Result<(), InputError> {
    use serde_yaml::Value;
    match (input.ty, value) {
        (InputType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => {
            in_range(input, n.as_f64().unwrap_or(0.0))
        }
        (InputType::Number, Value::Number(n)) => in_range(input, n.as_f64().unwrap_or(0.0)),
        (InputType::Boolean, Value::Bool(_)) => Ok(()),
        (InputType::String, Value::String(_)) => Ok(()),
        (InputType::Identifier, Value::String(s)) => params::quote_identifier(s)
            .map(|_| ())
            .map_err(InputError::Identifier),
        (InputType::IdentifierList, Value::String(s)) => params::quote_identifier_list(s)
            .map(|_| ())
            .map_err(InputError::Identifier),
        (InputType::Duration, Value::String(s)) => parse_duration(s)
            .map(|_| ())
            .ok_or_else(|| InputError::Duration(s.clone())),
        (InputType::Enum, Value::String(s)) => {
            let allowed = input.values.clone().unwrap_or_default();
            if allowed.contains(s) {
                Ok(())
            } else {
                Err(InputError::NotAllowed {
                    value: s.clone(),
                    allowed,
                })
            }
        }
        (ty, v) => Err(InputError::WrongType {
            expected: format!("{ty:?}").to_lowercase(),
            found: serde_yaml::to_string(v)
                .unwrap_or_default()
                .trim()
                .to_string(),
        }),
    }
}

fn in_range(input: &InputSpec, value: f64) -> Result<(), InputError> {
    if let Some(min) = input.min
        && value < min
    {
        return Err(InputError::BelowMinimum { value, min });
    }
    if let Some(max) = input.max
        && value > max
    {
        return Err(InputError::AboveMaximum { value, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> InputSpec {
        serde_yaml::from_str(yaml).expect("input spec")
    }

    fn value(yaml: &str) -> serde_yaml::Value {
        serde_yaml::from_str(yaml).expect("value")
    }

    #[test]
    fn a_value_out_of_range_names_the_bound_it_crossed() {
        let input = spec("type: integer\nmin: 1\nmax: 10\n");
        assert_eq!(check_value(&input, &value("5")), Ok(()));
        let err = check_value(&input, &value("0")).unwrap_err();
        assert_eq!(
            err,
            InputError::BelowMinimum {
                value: 0.0,
                min: 1.0
            }
        );
        assert_eq!(err.to_string(), "0 is below the minimum 1");
        assert_eq!(
            check_value(&input, &value("11")).unwrap_err().to_string(),
            "11 is above the maximum 10"
        );
    }

    #[test]
    fn a_value_of_the_wrong_kind_says_what_was_expected_and_found() {
        let err = check_value(&spec("type: integer\n"), &value("'ten'")).unwrap_err();
        assert_eq!(err.to_string(), "expected integer but found ten");
        let err =
            check_value(&spec("type: enum\nvalues: [fast, safe]\n"), &value("slow")).unwrap_err();
        assert_eq!(err.to_string(), "`slow` is not one of fast, safe");
        let err = check_value(&spec("type: duration\n"), &value("soon")).unwrap_err();
        assert_eq!(err, InputError::Duration("soon".into()));
        let err = check_value(&spec("type: identifier\n"), &value("a.b.c")).unwrap_err();
        assert!(matches!(err, InputError::Identifier(_)), "{err:?}");
    }

    #[test]
    fn an_identifier_list_takes_plain_names_and_refuses_a_schema_or_a_quote() {
        let input = spec("type: identifier_list\n");
        assert_eq!(check_value(&input, &value("customer_id")), Ok(()));
        assert_eq!(
            check_value(&input, &value("'customer_id, created_at'")),
            Ok(())
        );
        assert_eq!(
            params::quote_identifier_list("customer_id,  created_at"),
            Ok("\"customer_id\", \"created_at\"".to_string())
        );
        for bad in ["'public.orders'", "'a, '", "'a\"; DROP TABLE t; --'", "''"] {
            let err = check_value(&input, &value(bad)).unwrap_err();
            assert!(matches!(err, InputError::Identifier(_)), "{bad}: {err:?}");
        }
    }
}
