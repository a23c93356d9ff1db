//! Import parity with Kubo's `ipfs add`: the vectors Kubo itself publishes and checks.

mod support;

use model::content::{ContentService, ImportOptions};
use support::{add_request, kubo_bytes, node, pieces};

async fn cid_of(data: Vec<u8>, options: ImportOptions, piece: usize) -> String {
    let (node, _) = node();
    node.add(pieces(data, piece), add_request(options))
        .await
        .unwrap()
        .cid
        .to_string()
}

fn v0() -> ImportOptions {
    ImportOptions::default()
}

fn v1() -> ImportOptions {
    ImportOptions::new(Some(1), None, None).unwrap()
}

#[tokio::test]
async fn small_files_match_kubo_in_both_profiles() {
    let cases: [(&[u8], &str, &str); 3] = [
        (
            b"",
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        ),
        (
            b"hello world\n",
            "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
            "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
        ),
        (
            b"hello world",
            "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD",
            "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
        ),
    ];
    for (content, expected_v0, expected_v1) in cases {
        assert_eq!(
            cid_of(content.to_vec(), v0(), 3).await,
            expected_v0,
            "v0 of {content:?}"
        );
        assert_eq!(
            cid_of(content.to_vec(), v1(), 5).await,
            expected_v1,
            "v1 of {content:?}"
        );
    }
}

#[tokio::test]
async fn one_chunk_and_one_byte_more_match_kubo() {
    let data = kubo_bytes("chunk-v0-seed", 262_145);
    assert_eq!(
        cid_of(data[..262_144].to_vec(), v0(), 100_000).await,
        "QmWmRj3dFDZdb6ABvbmKhEL6TmPbAfBZ1t5BxsEyJrcZhE"
    );
    assert_eq!(
        cid_of(data, v0(), 65_536).await,
        "QmYyLxtzZyW22zpoVAtKANLRHpDjZtNeDjQdJrcQNWoRkJ"
    );
}

#[tokio::test]
async fn a_full_node_and_one_leaf_more_match_kubo() {
    let data = kubo_bytes("v0-seed", 175 * 262_144);
    assert_eq!(
        cid_of(data[..174 * 262_144].to_vec(), v0(), 1 << 20).await,
        "QmUbBALi174SnogsUzLpYbD4xPiBSFANF4iztWCsHbMKh2"
    );
    assert_eq!(
        cid_of(data, v0(), 1 << 20).await,
        "QmepeWtdmS1hHXx1oZXsPUv6bMrfRRKfZcoPPU4eEfjnbf"
    );
}

#[tokio::test]
async fn zeros_spanning_two_tree_levels_match_kubo() {
    let data = vec![0u8; 45_900_000];
    assert_eq!(
        cid_of(data, v0(), 1 << 20).await,
        "QmRdPboiJQoZ5cdazR9a8vGqdJvWg6M5bfdtUSKNHpuscj"
    );
}
