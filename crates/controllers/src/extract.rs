//! `Checked<T>`: a query string parsed into `T` and validated, with a 400 that names the bad parameter.
//! `Json<T>`: a JSON body parsed into `T`, with a 400 that names the field whose value has the wrong
//! type (actix's own extractor says only where in the text the parser stopped).

use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, mime, web};
use futures::future::{LocalBoxFuture, Ready, ready};
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

/// A JSON body parsed into `T`; validation, if any, is the handler's.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

fn invalid_json(message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        format!("invalid JSON body: {message}"),
    )
}

/// Parses a JSON body; a value of the wrong type is named by its path (`renditions[0].quality`).
/// A number with no fractional part is an integer whatever its spelling (`48.0`), as JSON Schema
/// says and as clients that hold every number as a double send it.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut json: serde_json::Value = serde_json::from_slice(body).map_err(invalid_json)?;
    integral_numbers_as_integers(&mut json);
    serde_path_to_error::deserialize(json).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path != "." {
            ApiError::bad_parameter(&path, format!("{path}: {inner}"))
        } else {
            invalid_json(inner)
        }
    })
}

/// Rewrites `48.0` as `48` throughout, within the integers a double holds exactly.
fn integral_numbers_as_integers(value: &mut serde_json::Value) {
    const EXACT: f64 = (1u64 << 53) as f64;
    match value {
        serde_json::Value::Number(number) if !number.is_i64() && !number.is_u64() => {
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
                && float.abs() <= EXACT
            {
                *number = serde_json::Number::from(float as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = req
            .mime_type()
            .ok()
            .flatten()
            .is_some_and(|mime| mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON));
        // The body within the app's payload limit (413 beyond it).
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !json {
                return Err(invalid_json("the Content-Type must be application/json").into());
            }
            let body = body.await?;
            Ok(Json(parse_json(&body)?))
        })
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

    #[derive(Debug, Deserialize)]
    struct Nested {
        items: Vec<Sample>,
    }

    #[test]
    fn a_json_value_of_the_wrong_type_is_named_by_its_path() {
        let err = parse_json::<Nested>(br#"{"items": [{"version": 1}, {"version": -1}]}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("items[1].version"));
        assert!(
            err.message.starts_with("items[1].version: invalid value"),
            "{}",
            err.message
        );
        // Not JSON at all, or trailing text: no field to name.
        for body in [&b"{\"items\": ["[..], b"[] []", b"nope"] {
            let err = parse_json::<Nested>(body).unwrap_err();
            assert_eq!(
                (err.code, err.field.as_deref()),
                ("invalid_json", None),
                "{}",
                err.message
            );
        }
        assert!(parse_json::<Nested>(br#"{"items": []}"#).is_ok());
    }

    #[test]
    fn integral_numbers_count_as_integers_and_fractions_do_not() {
        let parsed = parse_json::<Nested>(br#"{"items": [{"version": 1.0}, {"version": 0}]}"#).unwrap();
        assert_eq!(parsed.items[0].version, Some(1));
        let err = parse_json::<Nested>(br#"{"items": [{"version": 0.5}]}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("items[0].version"));
        let err = parse_json::<Nested>(br#"{"items": [{"version": 1e300}]}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("items[0].version"));
    }
}
