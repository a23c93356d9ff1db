//! `Checked<T>`: a query string parsed into `T` and validated, with a 400 that names the bad parameter.

use actix_web::{FromRequest, HttpRequest, dev::Payload};
use futures::future::{Ready, ready};
use serde::de::DeserializeOwned;
use validator::Validate;

use crate::error::ApiError;

/// Query parameters that parsed and passed their validation rules.
#[derive(Debug)]
pub struct Checked<T>(pub T);

impl<T> std::ops::Deref for Checked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Parses and validates a query string; errors name the parameter at fault.
pub fn parse_query<T: DeserializeOwned + Validate>(query: &str) -> Result<T, ApiError> {
    let value: T = serde_urlencoded::from_str(query).map_err(|e| {
        // serde_urlencoded does not say which pair failed: try each alone to find it.
        let culprit = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .unwrap_or_default()
            .into_iter()
            .find(|(k, v)| {
                serde_urlencoded::to_string([(k, v)])
                    .ok()
                    .is_some_and(|pair| serde_urlencoded::from_str::<T>(&pair).is_err())
            });
        match culprit {
            Some((name, value)) => ApiError::bad_parameter(&name, format!("{name}: {value:?} is not valid ({e})")),
            None => ApiError::bad_parameter("query", format!("invalid query string: {e}")),
        }
    })?;
    value.validate()?;
    Ok(value)
}

impl<T: DeserializeOwned + Validate> FromRequest for Checked<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse_query(req.query_string()).map(Checked))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, Validate)]
    struct Sample {
        #[validate(range(max = 1, message = "must be 0 or 1"))]
        version: Option<u8>,
        flag: Option<bool>,
    }

    #[test]
    fn bad_values_and_failed_rules_name_their_parameter() {
        let err = parse_query::<Sample>("version=1&flag=maybe").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("flag"));
        let err = parse_query::<Sample>("version=x").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("version"));
        let err = parse_query::<Sample>("version=3").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("version"));
        assert!(err.message.contains("must be 0 or 1"));
        let parsed = parse_query::<Sample>("version=1&flag=true&other=ignored").unwrap();
        assert_eq!((parsed.version, parsed.flag), (Some(1), Some(true)));
    }
}
