//! CAR import/export and directories, on the gateway-conformance fixtures Kubo produced.

mod support;

use model::Error;
use model::content::{
    BlockStore, ByteRange, CarScope, ContentService, EntityBytes, ImportOptions, NodeKind, parse_cid,
};
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
        let exported = collect(node.export_car(&imported.roots[0], &[], CarScope::All).await.unwrap())
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
    let car = collect(first.export_car(&added.cid, &[], CarScope::All).await.unwrap())
        .await
        .unwrap();
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
    let (roots, blocks) = car_contents(
        collect(node.export_car(&root, &path, CarScope::All).await.unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(roots, vec![root], "the CAR is rooted where the path starts");
    assert_eq!(blocks[0], root, "the directory block proves the path");
    assert_eq!(blocks[1], target);
    let whole = car_contents(
        collect(node.export_car(&target, &[], CarScope::All).await.unwrap())
            .await
            .unwrap(),
    )
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
        collect(node.export_car(&hamt, &[entry.name], CarScope::All).await.unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(blocks[0], hamt);
    assert!(blocks.contains(&entry.cid));
    assert!(matches!(
        node.export_car(&root, &["nope".into()], CarScope::All).await,
        Err(Error::NoSuchPath { .. })
    ));
}

#[tokio::test]
async fn dag_scopes_carry_the_block_the_entity_or_the_bytes_a_range_needs() {
    let (node, _) = node();
    let data = support::kubo_bytes("scopes", 1024 * 1024);
    let options = ImportOptions::new(Some(1), None, Some("size-65536")).unwrap();
    let file = node
        .add(support::pieces(data, 100_000), support::add_request(options))
        .await
        .unwrap()
        .cid;
    let blocks_of = |scope| {
        let node = &node;
        async move {
            car_contents(
                collect(node.export_car(&file, &[], scope).await.unwrap())
                    .await
                    .unwrap(),
            )
            .await
            .1
        }
    };
    let all = blocks_of(CarScope::All).await;
    assert_eq!(all.len(), 17, "a root and sixteen 64 KiB leaves");
    assert_eq!(blocks_of(CarScope::Block).await, vec![file]);
    assert_eq!(
        blocks_of(CarScope::Entity(None)).await,
        all,
        "a file entity is all of it"
    );
    // Bytes 100000..=200000 lie in leaves 1, 2 and 3 (of 0..16).
    let range = EntityBytes::parse("100000:200000").unwrap();
    assert_eq!(
        blocks_of(CarScope::Entity(Some(range))).await,
        vec![all[0], all[2], all[3], all[4]]
    );
    // The last byte only: the root and the last leaf.
    let tail = EntityBytes::parse("-1:*").unwrap();
    assert_eq!(blocks_of(CarScope::Entity(Some(tail))).await, vec![all[0], all[16]]);

    // A HAMT directory's entity is its shards, not its entries.
    let hamt = node
        .import_car(
            file_stream("gateway-conformance/trustless_gateway_car/single-layer-hamt-with-multi-block-files.car"),
            true,
        )
        .await
        .unwrap()
        .roots[0];
    let (_, entity) = car_contents(
        collect(node.export_car(&hamt, &[], CarScope::Entity(None)).await.unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(entity[0], hamt);
    let entries = node.list_directory(&hamt).await.unwrap();
    assert!(
        entries.iter().all(|entry| !entity.contains(&entry.cid)),
        "no entry, only shards"
    );
    let (_, all) = car_contents(
        collect(node.export_car(&hamt, &[], CarScope::All).await.unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert!(entity.len() < all.len() && all.starts_with(&entity[..1]));
}

#[test]
fn entity_bytes_parse_and_resolve_as_the_trustless_gateway_spec_says() {
    let resolve = |text: &str, size| EntityBytes::parse(text).unwrap().resolve(size);
    assert_eq!(resolve("0:*", 100), (0, 100));
    assert_eq!(resolve("10:19", 100), (10, 20));
    assert_eq!(resolve("-10:*", 100), (90, 100));
    assert_eq!(resolve("0:-11", 100), (0, 90));
    assert_eq!(resolve("50:500", 100), (50, 100));
    assert_eq!(resolve("500:*", 100), (100, 100));
    assert_eq!(resolve("-500:*", 100), (0, 100));
    assert_eq!(resolve("9:3", 100), (9, 9), "empty: the root alone");
    for bad in ["", "5", "a:1", "1:b", "1:2:3", "99999999999999999999:*"] {
        let error = EntityBytes::parse(bad).unwrap_err();
        assert!(error.to_string().contains("entity-bytes"), "{bad}: {error}");
    }
}
