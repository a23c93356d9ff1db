//! Content paths in request URLs: `<cid>[/<segment>...]`, segments percent-decoded.

use cid::Cid;
use model::content::{ContentService, NodeKind, NodeStat, parse_cid};

use crate::error::ApiError;
use actix_web::http::StatusCode;

/// Splits what follows `prefix` in a raw (still percent-encoded) request path into the root CID
/// and decoded segments.
pub fn parse(raw_path: &str, prefix: &str) -> Result<(Cid, Vec<String>), ApiError> {
    let rest = raw_path.strip_prefix(prefix).unwrap_or(raw_path);
    let mut parts = rest.split('/');
    let cid = parse_cid(&decode_segment(parts.next().unwrap_or_default())?)?;
    let segments = parts
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect::<Result<_, _>>()?;
    Ok((cid, segments))
}

fn decode_segment(segment: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                format!("{segment:?} is not UTF-8"),
            )
        })
}

/// The file a request path names: its CID and stat, or an error naming what is wrong.
pub async fn file_at(
    content: &dyn ContentService,
    raw_path: &str,
    prefix: &str,
) -> Result<(Cid, NodeStat, Vec<String>), ApiError> {
    let (root, segments) = parse(raw_path, prefix)?;
    let trail = content.resolve(&root, &segments).await?;
    let cid = *trail.last().expect("a trail holds at least the root");
    let stat = content.stat(&cid).await?;
    if stat.kind != NodeKind::File {
        return Err(model::Error::WrongKind {
            cid,
            expected: "file",
            actual: stat.kind.as_str(),
        }
        .into());
    }
    Ok((cid, stat, segments))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_and_decode() {
        let (cid, segments) = parse(
            "/ipfs/QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o/a%20b//c%252C.txt",
            "/ipfs/",
        )
        .unwrap();
        assert_eq!(cid.to_string(), "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o");
        assert_eq!(segments, ["a b", "c%2C.txt"]);
        assert_eq!(parse("/ipfs/nope", "/ipfs/").unwrap_err().code, "invalid_cid");
        let not_utf8 = parse("/ipfs/QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o/%FF", "/ipfs/").unwrap_err();
        assert_eq!(not_utf8.code, "invalid_path");
    }
}
