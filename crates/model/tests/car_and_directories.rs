//! CAR import/export and directories, on the gateway-conformance fixtures Kubo produced.

mod support;

use model::Error;
use model::content::{BlockStore, ByteRange, ContentService, ImportOptions, NodeKind, parse_cid};
use support::{add_request, collect, file_stream, fixture, node, pieces};

#[tokio::test]
async fn kubo_cars_import_and_export_byte_for_byte() {
    for path in [
        "gateway-conformance/path_gateway_unixfs/dir-with-files.car",
        "gateway-conformance/trustless_gateway_car/single-layer-hamt-with-multi-block-files.car",
        "gateway-conformance/trustless_gateway_car/subdir-with-two-single-block-files.car",
        "gateway-conformance/gateway-raw-block.car",
    ] {
        let (node, _) = node();
        let imported = node.import_car(file_stream(path), true).await.unwrap();
        assert_eq!(imported.roots.len(), 1, "{path}");
        let exported = collect(node.export_car(&imported.roots[0], &[]).await.unwrap())
            .await
            .unwrap();
        let original = std::fs::read(fixture(path)).unwrap();
        assert!(
            exported == original,
            "{path}: our export differs from Kubo's dag export"
        );
    }
}

#[tokio::test]
async fn directories_list_and_resolve_paths() {
    let (node, _) = node();
    let car = "gateway-conformance/path_gateway_unixfs/dir-with-files.car";
    let root = node.import_car(file_stream(car), true).await.unwrap().roots[0];
    let stat = node.stat(&root).await.unwrap();
    assert_eq!(stat.kind, NodeKind::Directory);
    let names: Vec<String> = node
        .list_directory(&root)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["ascii-copy.txt", "ascii.txt", "hello.txt", "multiblock.txt"]);
    let hello = *node
        .resolve(&root, &["hello.txt".into()])
        .await
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(
        collect(node.read(&hello, ByteRange::full()).await.unwrap())
            .await
            .unwrap(),
        b"hello world\n"
    );
    let multiblock = *node
        .resolve(&root, &["multiblock.txt".into()])
        .await
        .unwrap()
        .last()
        .unwrap();
    let text = collect(node.read(&multiblock, ByteRange::full()).await.unwrap())
        .await
        .unwrap();
    assert!(text.starts_with(b"Lorem ipsum dolor sit amet"));
    let middle = collect(node.read(&multiblock, ByteRange::new(250, Some(20))).await.unwrap())
        .await
        .unwrap();
    assert_eq!(middle, text[250..270]);
    assert!(matches!(
        node.resolve(&root, &["missing.txt".into()]).await,
        Err(Error::NoSuchPath { name, .. }) if name == "missing.txt"
    ));
    // A file has no entries: a path through it does not exist.
    assert!(matches!(
        node.resolve(&root, &["hello.txt".into(), "deeper".into()]).await,
        Err(Error::NoSuchPath { name, .. }) if name == "deeper"
    ));
    assert!(matches!(
        node.read(&root, ByteRange::full()).await,
        Err(Error::WrongKind { expected: "file", .. })
    ));
}

#[tokio::test]
async fn hamt_sharded_directories_resolve_every_entry_by_hash() {
    let (node, _) = node();
    let car = "gateway-conformance/trustless_gateway_car/single-layer-hamt-with-multi-block-files.car";
    let root = node.import_car(file_stream(car), true).await.unwrap().roots[0];
    let entries = node.list_directory(&root).await.unwrap();
    assert!(entries.len() > 2, "a sharded directory has many entries");
    for entry in &entries {
        let resolved = node.resolve(&root, std::slice::from_ref(&entry.name)).await.unwrap();
        assert_eq!(resolved.len(), 2);
        let resolved = resolved[1];
        assert_eq!(resolved, entry.cid, "{}", entry.name);
    }
    assert!(matches!(
        node.resolve(&root, &["not-there.txt".into()]).await,
        Err(Error::NoSuchPath { .. })
    ));
}

#[tokio::test]
async fn a_car_missing_a_block_is_rejected_and_nothing_is_visible() {
    let (node, store) = node();
    let car = "gateway-conformance/trustless_gateway_car/file-3k-and-3-blocks-missing-block.car";
    let err = node.import_car(file_stream(car), true).await.unwrap_err();
    assert!(matches!(err, Error::IncompleteDag { .. }), "got {err}");
    assert!(store.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_truncated_car_is_rejected_and_nothing_is_visible() {
    let (node, store) = node();
    let mut bytes = std::fs::read(fixture("gateway-conformance/path_gateway_unixfs/dir-with-files.car")).unwrap();
    bytes.truncate(bytes.len() - 40);
    let err = node.import_car(pieces(bytes, 100), true).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidCar(ref m) if m.contains("truncated")),
        "got {err}"
    );
    assert!(store.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_car_with_a_forged_block_is_rejected_and_nothing_is_visible() {
    let (node, store) = node();
    let mut bytes = std::fs::read(fixture("gateway-conformance/path_gateway_unixfs/dir-with-files.car")).unwrap();
    let at = bytes.windows(5).position(|w| w == b"Lorem").unwrap();
    bytes[at] = b'l';
    let err = node.import_car(pieces(bytes, 100), true).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidCar(ref m) if m.contains("does not match its CID")),
        "got {err}"
    );
    assert!(store.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn garbage_is_not_a_car() {
    let (node, _) = node();
    let err = node
        .import_car(pieces(b"definitely not a CAR".to_vec(), 7), true)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidCar(_)), "got {err}");
}

#[tokio::test]
async fn exported_content_imports_into_another_node() {
    let (first, _) = node();
    let data: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let added = first
        .add(pieces(data.clone(), 50_000), add_request(ImportOptions::default()))
        .await
        .unwrap();
    let car = collect(first.export_car(&added.cid, &[]).await.unwrap()).await.unwrap();
    let (second, _) = node();
    let imported = second.import_car(pieces(car, 9999), true).await.unwrap();
    assert_eq!(imported.roots, vec![added.cid]);
    assert_eq!(
        collect(second.read(&added.cid, ByteRange::full()).await.unwrap())
            .await
            .unwrap(),
        data
    );
}

#[tokio::test]
async fn gc_removes_exactly_the_unpinned_blocks() {
    let (node, store) = node();
    let kept = node
        .add(
            pieces(vec![1u8; 600_000], 60_000),
            add_request(ImportOptions::default()),
        )
        .await
        .unwrap();
    let mut unpinned = add_request(ImportOptions::new(Some(1), None, None).unwrap());
    unpinned.pin = false;
    let dropped = node.add(pieces(vec![2u8; 600_000], 60_000), unpinned).await.unwrap();
    let report = node.collect_garbage().await.unwrap();
    // Two full chunks of ones are one block; with the short last leaf and the root: 3 blocks.
    assert_eq!(report.kept, 3);
    assert!(!store.has(&dropped.cid).await.unwrap());
    assert_eq!(
        collect(node.read(&kept.cid, ByteRange::full()).await.unwrap())
            .await
            .unwrap(),
        vec![1u8; 600_000]
    );

    node.remove(&kept.cid).await.unwrap();
    node.collect_garbage().await.unwrap();
    assert!(store.list().await.unwrap().is_empty());
    assert!(parse_cid(&kept.cid.to_string()).is_ok());
}

/// The CIDs of a CAR's header roots and blocks, in order.
async fn car_contents(bytes: Vec<u8>) -> (Vec<cid::Cid>, Vec<cid::Cid>) {
    let mut reader = iroh_car::CarReader::new(std::io::Cursor::new(bytes)).await.unwrap();
    let roots = reader.header().roots().to_vec();
    let mut blocks = Vec::new();
    while let Some((cid, _)) = reader.next_block().await.unwrap() {
        blocks.push(cid);
    }
    (roots, blocks)
}

#[tokio::test]
async fn a_path_car_holds_the_path_blocks_then_the_target_dag() {
    let (node, _) = node();
    let root = node
        .import_car(
            file_stream("gateway-conformance/path_gateway_unixfs/dir-with-files.car"),
            true,
        )
        .await
        .unwrap()
        .roots[0];
    let path = vec!["multiblock.txt".to_owned()];
    let target = *node.resolve(&root, &path).await.unwrap().last().unwrap();
    let (roots, blocks) = car_contents(collect(node.export_car(&root, &path).await.unwrap()).await.unwrap()).await;
    assert_eq!(roots, vec![root], "the CAR is rooted where the path starts");
    assert_eq!(blocks[0], root, "the directory block proves the path");
    assert_eq!(blocks[1], target);
    let whole = car_contents(collect(node.export_car(&target, &[]).await.unwrap()).await.unwrap())
        .await
        .1;
    assert_eq!(blocks[1..], whole[..], "then the target's whole DAG");

    // Through a HAMT, the shards on the way are included too.
    let hamt = node
        .import_car(
            file_stream("gateway-conformance/trustless_gateway_car/single-layer-hamt-with-multi-block-files.car"),
            true,
        )
        .await
        .unwrap()
        .roots[0];
    let entry = node.list_directory(&hamt).await.unwrap()[0].clone();
    let (_, blocks) = car_contents(
        collect(node.export_car(&hamt, &[entry.name]).await.unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(blocks[0], hamt);
    assert!(blocks.contains(&entry.cid));
    assert!(matches!(
        node.export_car(&root, &["nope".into()]).await,
        Err(Error::NoSuchPath { .. })
    ));
}
