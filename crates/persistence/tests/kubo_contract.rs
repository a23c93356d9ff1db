//! The Kubo block store against a small HTTP double that speaks Kubo's documented RPC shapes:
//! POST only (other methods get 405), arguments in `?arg=`, multipart uploads, errors as
//! 500 + `{"Message", "Code", "Type"}`. No Kubo binary is available to test against.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_multipart::Multipart;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;
use cid::Cid;
use futures::{StreamExt, TryStreamExt, stream};
use model::Error;
use model::content::{
    AddRequest, BlockStore, ByteRange, ContentNode, ContentService, ImportOptions, MemoryContentRepository,
};
use persistence::KuboBlockStore;

#[derive(Default)]
struct Double {
    blocks: Mutex<HashMap<Vec<u8>, Bytes>>,
    pins: Mutex<HashSet<String>>,
}

fn kubo_error(message: &str) -> HttpResponse {
    HttpResponse::InternalServerError().json(serde_json::json!({"Message": message, "Code": 0, "Type": "error"}))
}

fn arg(req: &HttpRequest) -> Option<Cid> {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string()).ok()?;
    Cid::try_from(query.get("arg")?.as_str()).ok()
}

async fn block_get(req: HttpRequest, double: web::Data<Double>) -> HttpResponse {
    let Some(cid) = arg(&req) else {
        return kubo_error("invalid path: argument \"arg\" is required");
    };
    match double.blocks.lock().unwrap().get(&cid.hash().to_bytes()) {
        Some(data) => HttpResponse::Ok().content_type("text/plain").body(data.clone()),
        None => kubo_error("block was not found locally (offline): ipld: could not find node"),
    }
}

async fn block_stat(req: HttpRequest, double: web::Data<Double>) -> HttpResponse {
    let Some(cid) = arg(&req) else {
        return kubo_error("argument \"arg\" is required");
    };
    match double.blocks.lock().unwrap().get(&cid.hash().to_bytes()) {
        Some(data) => HttpResponse::Ok().json(serde_json::json!({"Key": cid.to_string(), "Size": data.len()})),
        None => kubo_error("ipld: could not find node: block not found locally"),
    }
}

async fn block_put(req: HttpRequest, mut form: Multipart, double: web::Data<Double>) -> HttpResponse {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string()).unwrap();
    let codec = match query.get("cid-codec").map(String::as_str) {
        Some("dag-pb") => 0x70,
        Some("raw") | None => 0x55,
        Some(other) => return kubo_error(&format!("unknown cid-codec {other}")),
    };
    let Some(Ok(mut field)) = form.next().await else {
        return kubo_error("file argument 'data' is required");
    };
    let mut data = Vec::new();
    while let Some(chunk) = field.next().await {
        data.extend_from_slice(&chunk.unwrap());
    }
    use multihash_codetable::{Code, MultihashDigest};
    let cid = Cid::new_v1(codec, Code::Sha2_256.digest(&data));
    let size = data.len();
    double.blocks.lock().unwrap().insert(cid.hash().to_bytes(), data.into());
    HttpResponse::Ok().json(serde_json::json!({"Key": cid.to_string(), "Size": size}))
}

async fn pin_add(req: HttpRequest, double: web::Data<Double>) -> HttpResponse {
    let Some(cid) = arg(&req) else {
        return kubo_error("argument \"arg\" is required");
    };
    double.pins.lock().unwrap().insert(cid.to_string());
    HttpResponse::Ok().json(serde_json::json!({"Pins": [cid.to_string()]}))
}

async fn pin_rm(req: HttpRequest, double: web::Data<Double>) -> HttpResponse {
    let Some(cid) = arg(&req) else {
        return kubo_error("argument \"arg\" is required");
    };
    if double.pins.lock().unwrap().remove(&cid.to_string()) {
        HttpResponse::Ok().json(serde_json::json!({"Pins": [cid.to_string()]}))
    } else {
        kubo_error("not pinned or pinned indirectly")
    }
}

async fn start_double() -> (String, Arc<Double>) {
    let double = web::Data::new(Double::default());
    let shared = double.clone().into_inner();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(double.clone())
            .route("/api/v0/block/get", web::post().to(block_get))
            .route("/api/v0/block/stat", web::post().to(block_stat))
            .route("/api/v0/block/put", web::post().to(block_put))
            .route("/api/v0/pin/add", web::post().to(pin_add))
            .route("/api/v0/pin/rm", web::post().to(pin_rm))
            .default_service(web::to(|req: HttpRequest| async move {
                if req.method() == actix_web::http::Method::POST {
                    HttpResponse::NotFound().body("404 page not found")
                } else {
                    HttpResponse::MethodNotAllowed().body(format!("{} not allowed", req.method()))
                }
            }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let address = server.addrs()[0];
    tokio::spawn(server.run());
    (format!("http://{address}"), shared)
}

fn input(data: &[u8]) -> model::content::ByteStream {
    let pieces: Vec<model::Result<Bytes>> = data.chunks(50_000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(pieces).boxed()
}

#[actix_web::test]
async fn content_added_through_kubo_reads_back_verified_and_pinned() {
    let (api, double) = start_double().await;
    let store = KuboBlockStore::new(&api, Duration::from_secs(10)).unwrap();
    let node = ContentNode::new(Arc::new(store.clone()), Arc::new(MemoryContentRepository::new()));
    let data: Vec<u8> = (0..700_000u32).map(|i| (i % 241) as u8).collect();
    for options in [
        ImportOptions::default(),
        ImportOptions::new(Some(1), None, Some("size-65536")).unwrap(),
    ] {
        let added = node
            .add(
                input(&data),
                AddRequest {
                    options,
                    pin: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        // The CID is the one a local import gives (and so Kubo's `add`).
        let local = ContentNode::new(
            Arc::new(model::content::MemoryBlockStore::new()),
            Arc::new(MemoryContentRepository::new()),
        );
        let expected = local
            .add(
                input(&data),
                AddRequest {
                    options,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(added.cid, expected.cid);
        assert!(double.pins.lock().unwrap().contains(&added.cid.to_string()));

        let range: Vec<Bytes> = node
            .read(&added.cid, ByteRange::new(300_000, Some(70_000)))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(range.concat(), data[300_000..370_000]);
    }
}

#[actix_web::test]
async fn a_block_kubo_serves_wrongly_is_refused() {
    let (api, double) = start_double().await;
    let store = KuboBlockStore::new(&api, Duration::from_secs(10)).unwrap();
    let node = ContentNode::new(Arc::new(store), Arc::new(MemoryContentRepository::new()));
    let added = node.add(input(b"hello world\n"), AddRequest::default()).await.unwrap();
    for data in double.blocks.lock().unwrap().values_mut() {
        *data = Bytes::from_static(b"tampered");
    }
    let err = node.read(&added.cid, ByteRange::full()).await.err().unwrap();
    assert!(matches!(err, Error::HashMismatch(_)), "got {err}");
}

#[actix_web::test]
async fn kubo_errors_and_missing_blocks_are_reported() {
    let (api, _double) = start_double().await;
    let store = KuboBlockStore::new(&api, Duration::from_secs(10)).unwrap();
    let missing = Cid::try_from("bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e").unwrap();
    assert_eq!(store.get(&missing).await.unwrap(), None);
    assert!(!store.has(&missing).await.unwrap());
    store
        .unpin(&missing)
        .await
        .expect("unpinning what is not pinned is not an error");
    assert!(matches!(store.list().await, Err(Error::Unsupported(_))));

    // The double answers GET with 405, as Kubo does; our client only POSTs.
    let reply = reqwest::Client::new()
        .get(format!("{api}/api/v0/block/get?arg={missing}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 405);

    let unreachable = KuboBlockStore::new("http://127.0.0.1:9", Duration::from_secs(2)).unwrap();
    let err = unreachable.get(&missing).await.unwrap_err();
    assert!(
        matches!(err, Error::Store(ref m) if m.contains("block/get")),
        "got {err}"
    );
}
