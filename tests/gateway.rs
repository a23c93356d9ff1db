//! The gateway end to end, on the gateway-conformance fixtures: status, headers and bytes.

mod common;

use common::{Repo, Server, server_with_cars};
use futures::StreamExt;
use reqwest::header::HeaderMap;

const DIR_WITH_FILES: &str = "gateway-conformance/path_gateway_unixfs/dir-with-files.car";
const PERCENT_NAME: &str = "gateway-conformance/path_gateway_unixfs/dir-with-percent-encoded-filename.car";
const HAMT: &str = "gateway-conformance/trustless_gateway_car/single-layer-hamt-with-multi-block-files.car";
const HELLO: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

struct Case {
    what: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    status: u16,
    expect_headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

async fn check(server: &Server, case: Case) -> (HeaderMap, Vec<u8>) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = client.get(format!("{}{}", server.base, case.path));
    for (name, value) in &case.headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap().to_vec();
    assert_eq!(status, case.status, "{}: {}", case.what, String::from_utf8_lossy(&body));
    for (name, value) in &case.expect_headers {
        let got = headers.get(*name).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(got.as_deref(), Some(value.as_str()), "{}: header {name}", case.what);
    }
    if let Some(expected) = &case.body {
        assert_eq!(&body, expected, "{}: body", case.what);
    }
    (headers, body)
}

fn case(what: &'static str, path: String, status: u16) -> Case {
    Case {
        what,
        path,
        headers: vec![],
        status,
        expect_headers: vec![],
        body: None,
    }
}

#[tokio::test]
async fn files_paths_and_ranges_follow_the_specs() {
    let repo = Repo::new();
    let (server, roots) = server_with_cars(&repo, &[DIR_WITH_FILES]);
    let root = &roots[0];
    let hello = format!("/ipfs/{root}/hello.txt");
    let immutable = "public, max-age=29030400, immutable".to_owned();
    let cases = vec![
        Case {
            expect_headers: vec![
                ("etag", format!("\"{HELLO}\"")),
                ("cache-control", immutable.clone()),
                ("accept-ranges", "bytes".into()),
                ("content-length", "12".into()),
                ("content-type", "text/plain; charset=utf-8".into()),
                ("x-ipfs-path", hello.clone()),
                ("x-ipfs-roots", format!("{root},{HELLO}")),
            ],
            body: Some(b"hello world\n".to_vec()),
            ..case("a file by path", hello.clone(), 200)
        },
        Case {
            headers: vec![("range", "bytes=0-4".into())],
            expect_headers: vec![("content-range", "bytes 0-4/12".into()), ("content-length", "5".into())],
            body: Some(b"hello".to_vec()),
            ..case("a closed range", hello.clone(), 206)
        },
        Case {
            headers: vec![("range", "bytes=6-".into())],
            expect_headers: vec![("content-range", "bytes 6-11/12".into())],
            body: Some(b"world\n".to_vec()),
            ..case("an open range", hello.clone(), 206)
        },
        Case {
            headers: vec![("range", "bytes=-3".into())],
            expect_headers: vec![("content-range", "bytes 9-11/12".into())],
            body: Some(b"ld\n".to_vec()),
            ..case("a suffix range", hello.clone(), 206)
        },
        Case {
            headers: vec![("range", "bytes=12-".into())],
            expect_headers: vec![("content-range", "bytes */12".into())],
            ..case("an unsatisfiable range", hello.clone(), 416)
        },
        Case {
            headers: vec![("range", "bytes=abc".into())],
            body: Some(b"hello world\n".to_vec()),
            ..case("a malformed range is ignored", hello.clone(), 200)
        },
        Case {
            headers: vec![("if-none-match", format!("\"{HELLO}\""))],
            expect_headers: vec![("etag", format!("\"{HELLO}\""))],
            body: Some(vec![]),
            ..case("a matching If-None-Match", hello.clone(), 304)
        },
        Case {
            body: Some(b"hello world\n".to_vec()),
            expect_headers: vec![("x-ipfs-roots", HELLO.into())],
            ..case("a file by its own CID", format!("/ipfs/{HELLO}"), 200)
        },
        Case {
            expect_headers: vec![("content-disposition", "attachment; filename=\"greeting.txt\"".into())],
            ..case(
                "filename and download",
                format!("{hello}?filename=greeting.txt&download=true"),
                200,
            )
        },
        case("a missing path", format!("/ipfs/{root}/missing.txt"), 404),
        case("a malformed CID", "/ipfs/not-a-cid".into(), 400),
        case(
            "an unknown CID",
            "/ipfs/bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".into(),
            404,
        ),
        case("a bad format", format!("{hello}?format=tar"), 400),
        case("a bad download flag", format!("{hello}?download=maybe"), 400),
    ];
    for case in cases {
        check(&server, case).await;
    }
}

#[tokio::test]
async fn several_ranges_come_as_multipart_byteranges() {
    let repo = Repo::new();
    let (server, roots) = server_with_cars(&repo, &[DIR_WITH_FILES]);
    let path = format!("/ipfs/{}/multiblock.txt", roots[0]);
    let whole = check(&server, case("whole", path.clone(), 200)).await.1;
    let (headers, body) = check(
        &server,
        Case {
            headers: vec![("range", "bytes=0-9,300-309".into())],
            ..case("two ranges", path, 206)
        },
    )
    .await;
    let content_type = headers["content-type"].to_str().unwrap();
    let boundary = content_type.strip_prefix("multipart/byteranges; boundary=").unwrap();
    let text = String::from_utf8(body).unwrap();
    let total = whole.len();
    assert!(text.contains(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-9/{total}\r\n\r\n{}",
        String::from_utf8_lossy(&whole[..10])
    )));
    assert!(text.contains(&format!(
        "Content-Range: bytes 300-309/{total}\r\n\r\n{}",
        String::from_utf8_lossy(&whole[300..310])
    )));
    assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
}

#[tokio::test]
async fn raw_blocks_and_cars_follow_the_trustless_gateway_spec() {
    let repo = Repo::new();
    let (server, roots) = server_with_cars(&repo, &[DIR_WITH_FILES]);
    let root = &roots[0];
    let car = std::fs::read(format!(
        "{}/../../tests/fixtures/{DIR_WITH_FILES}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    check(
        &server,
        Case {
            expect_headers: vec![
                ("content-type", "application/vnd.ipld.raw".into()),
                ("content-disposition", format!("attachment; filename=\"{HELLO}.bin\"")),
                ("x-content-type-options", "nosniff".into()),
            ],
            body: Some(b"hello world\n".to_vec()),
            ..case("?format=raw", format!("/ipfs/{HELLO}?format=raw"), 200)
        },
    )
    .await;
    check(
        &server,
        Case {
            headers: vec![("accept", "application/vnd.ipld.raw".into())],
            body: Some(b"hello world\n".to_vec()),
            ..case("Accept: raw", format!("/ipfs/{HELLO}"), 200)
        },
    )
    .await;
    check(
        &server,
        Case {
            expect_headers: vec![
                (
                    "content-type",
                    "application/vnd.ipld.car; version=1; order=dfs; dups=n".into(),
                ),
                ("content-disposition", format!("attachment; filename=\"{root}.car\"")),
            ],
            body: Some(car.clone()),
            ..case(
                "?format=car is Kubo's dag export",
                format!("/ipfs/{root}?format=car"),
                200,
            )
        },
    )
    .await;
    check(
        &server,
        Case {
            headers: vec![("accept", "application/vnd.ipld.car".into())],
            body: Some(car),
            ..case("Accept: car", format!("/ipfs/{root}"), 200)
        },
    )
    .await;
}

#[tokio::test]
async fn directories_list_as_html_or_json_and_resolve_sharded_and_encoded_names() {
    let repo = Repo::new();
    let (server, roots) = server_with_cars(&repo, &[DIR_WITH_FILES, PERCENT_NAME, HAMT]);
    let (_, html) = check(&server, case("an HTML listing", format!("/ipfs/{}/", roots[0]), 200)).await;
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains(">multiblock.txt</a>") && html.contains("<!DOCTYPE html>"));
    let (_, json) = check(
        &server,
        Case {
            headers: vec![("accept", "application/json".into())],
            ..case("a JSON listing", format!("/ipfs/{}", roots[0]), 200)
        },
    )
    .await;
    let listing: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(listing["entries"].as_array().unwrap().len(), 4);
    assert_eq!(listing["entries"][2]["name"], "hello.txt");
    assert_eq!(listing["entries"][2]["cid"], HELLO);

    // The file name itself contains "%2C": it is sent percent-encoded once more.
    let encoded = "Portugal%252C+Espa%C3%B1a=Peninsula%20Ib%C3%A9rica.txt";
    check(
        &server,
        Case {
            body: Some(b"hello from a percent encoded filename\n".to_vec()),
            ..case("a percent-encoded name", format!("/ipfs/{}/{encoded}", roots[1]), 200)
        },
    )
    .await;

    // Every entry of the HAMT-sharded directory resolves through the gateway.
    let (_, json) = check(
        &server,
        Case {
            headers: vec![("accept", "application/json".into())],
            ..case("a sharded listing", format!("/ipfs/{}", roots[2]), 200)
        },
    )
    .await;
    let listing: serde_json::Value = serde_json::from_slice(&json).unwrap();
    for entry in listing["entries"].as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let (headers, _) = check(
            &server,
            case("a sharded entry", format!("/ipfs/{}/{name}", roots[2]), 200),
        )
        .await;
        assert_eq!(
            headers["etag"].to_str().unwrap(),
            format!("\"{}\"", entry["cid"].as_str().unwrap())
        );
    }
}

#[tokio::test]
async fn head_gives_the_headers_of_get_without_a_body() {
    let repo = Repo::new();
    let (server, roots) = server_with_cars(&repo, &[DIR_WITH_FILES]);
    let response = reqwest::Client::new()
        .head(format!("{}/ipfs/{}/hello.txt", server.base, roots[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], "12");
    assert_eq!(response.headers()["etag"], format!("\"{HELLO}\"").as_str());
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/no/such/route", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unknown_route");
    let response = client
        .put(format!("{}/ipfs/{HELLO}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
}

#[tokio::test]
async fn the_api_documents_itself_offline() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let client = reqwest::Client::new();
    let served: serde_json::Value = client
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/../../openapi/openapi.json", env!("CARGO_MANIFEST_DIR"))).unwrap(),
    )
    .unwrap();
    assert_eq!(served, committed);
    let docs = client.get(format!("{}/docs/", server.base)).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    let page = docs.text().await.unwrap();
    assert!(page.contains("swagger-ui"), "the docs page is Swagger UI");
    for asset in ["swagger-ui.css", "swagger-ui-bundle.js", "swagger-initializer.js"] {
        assert!(page.contains(asset), "{asset} is referenced");
        let response = client
            .get(format!("{}/docs/{asset}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset} is served by the server itself");
    }
    assert!(!page.contains("https://"), "nothing is fetched from a CDN");
    let initializer = client
        .get(format!("{}/docs/swagger-initializer.js", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/openapi.json"));
}

/// A CAR of a directory holding `index.html` (and `style.css`), built with the model's own encoders.
async fn website_car() -> (String, Vec<u8>) {
    use futures::TryStreamExt;
    use model::content::dagpb::{DataType, PbLink, UnixFsData, unixfs_block};
    use model::content::{
        AddRequest, BlockStore, ContentNode, ContentService, MemoryBlockStore, MemoryContentRepository,
    };
    use std::sync::Arc;

    let store = MemoryBlockStore::new();
    let node = ContentNode::new(Arc::new(store.clone()), Arc::new(MemoryContentRepository::new()));
    let mut links = Vec::new();
    for (name, text) in [("index.html", "<h1>home</h1>\n"), ("style.css", "h1 { color: red }\n")] {
        let input = futures::stream::iter([Ok(bytes::Bytes::from(text))]).boxed();
        let added = node.add(input, AddRequest::default()).await.unwrap();
        links.push(PbLink::named(&added.cid, name.to_owned(), text.len() as u64 + 6));
    }
    let data = UnixFsData {
        r#type: DataType::Directory as i32,
        ..Default::default()
    };
    let directory = model::content::Block::encode(cid::Version::V0, 0x70, unixfs_block(&links, &data));
    let mut batch = store.begin().await.unwrap();
    batch.put(directory.clone()).await.unwrap();
    batch.commit(&[*directory.cid()]).await.unwrap();
    let car: Vec<bytes::Bytes> = node
        .export_car(directory.cid(), &[], model::content::CarScope::All)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    (directory.cid().to_string(), car.concat())
}

#[tokio::test]
async fn a_directory_with_index_html_is_served_as_a_website() {
    let (root, car) = website_car().await;
    let repo = Repo::new();
    let car_path = repo.write_file("site.car", &car);
    assert_eq!(
        repo.run_text(&["car", "import", car_path.to_str().unwrap()]).trim(),
        format!("imported {root}")
    );
    let server = Server::start(&repo);
    check(
        &server,
        Case {
            expect_headers: vec![("location", format!("/ipfs/{root}/"))],
            ..case("no trailing slash redirects", format!("/ipfs/{root}"), 301)
        },
    )
    .await;
    check(
        &server,
        Case {
            expect_headers: vec![("content-type", "text/html; charset=utf-8".into())],
            body: Some(b"<h1>home</h1>\n".to_vec()),
            ..case("index.html", format!("/ipfs/{root}/"), 200)
        },
    )
    .await;
    check(
        &server,
        Case {
            expect_headers: vec![("content-type", "text/css; charset=utf-8".into())],
            ..case("a sibling file", format!("/ipfs/{root}/style.css"), 200)
        },
    )
    .await;
}

/// The CIDs of a CAR v1's blocks, in order (the header skipped).
fn car_block_cids(car: &[u8]) -> Vec<cid::Cid> {
    fn varint(data: &[u8], at: &mut usize) -> usize {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let byte = data[*at];
            *at += 1;
            value |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
            shift += 7;
        }
    }
    let mut at = 0;
    let header = varint(car, &mut at);
    at += header;
    let mut cids = Vec::new();
    while at < car.len() {
        let len = varint(car, &mut at);
        let cid = cid::Cid::read_bytes(&car[at..at + len]).unwrap();
        cids.push(cid);
        at += len;
    }
    cids
}

#[tokio::test]
async fn car_requests_honour_dag_scope_and_entity_bytes() {
    let repo = Repo::new();
    let data = common::bytes(1024 * 1024, 23);
    let path = repo.write_file("scoped.bin", &data);
    let file = repo
        .run_text(&[
            "add",
            "-q",
            "--cid-version",
            "1",
            "--chunker",
            "size-65536",
            path.to_str().unwrap(),
        ])
        .trim()
        .to_owned();
    let server = Server::start(&repo);
    let car = |query: &str| {
        let url = format!("{}/ipfs/{file}?format=car{query}", server.base);
        async move {
            let response = reqwest::get(url).await.unwrap();
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            (status, headers, response.bytes().await.unwrap().to_vec())
        }
    };
    let (status, headers, all) = car("").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(
        headers["content-type"],
        "application/vnd.ipld.car; version=1; order=dfs; dups=n"
    );
    let all = car_block_cids(&all);
    assert_eq!(all.len(), 17);
    let (_, block_headers, block) = car("&dag-scope=block").await;
    assert_eq!(car_block_cids(&block), vec![all[0]]);
    assert_ne!(
        block_headers["etag"], headers["etag"],
        "each scope is its own representation"
    );
    let (_, _, entity) = car("&dag-scope=entity").await;
    assert_eq!(car_block_cids(&entity), all);
    // Bytes 65536..=131071 are the second leaf exactly.
    let (_, _, range) = car("&dag-scope=entity&entity-bytes=65536:131071").await;
    assert_eq!(car_block_cids(&range), vec![all[0], all[2]]);
    let (_, _, tail) = car("&dag-scope=entity&entity-bytes=-10:*").await;
    assert_eq!(car_block_cids(&tail), vec![all[0], all[16]]);

    for (query, field) in [
        ("&dag-scope=some", "dag-scope"),
        ("&dag-scope=entity&entity-bytes=1-2", "entity-bytes"),
    ] {
        let (status, _, body) = car(query).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(field), "{query}: {body}");
    }
}
