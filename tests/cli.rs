//! The command line, end to end: the real binary on a temp data dir.

mod common;

use common::{Repo, Server, bytes};

fn fixture(path: &str) -> String {
    format!("{}/../../tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn add_prints_kubo_cids_in_both_profiles_and_from_stdin() {
    let repo = Repo::new();
    let file = repo.write_file("hello.txt", b"hello world\n");
    let file = file.to_str().unwrap();
    assert_eq!(
        repo.run_text(&["add", file]),
        "added QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o hello.txt\n"
    );
    assert_eq!(
        repo.run_text(&["add", "-q", "--cid-version", "1", file]),
        "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4\n"
    );
    assert_eq!(
        repo.run_with_stdin(&["add", "-q", "-"], b"hello world"),
        "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD\n"
    );
    // v1 with dag-pb leaves, and a small chunker: a multi-block file.
    let cid = repo.run_text(&[
        "add",
        "-q",
        "--cid-version",
        "1",
        "--raw-leaves=false",
        "--chunker",
        "size-1024",
        file,
    ]);
    assert!(cid.starts_with("bafybei"), "{cid}");
}

#[test]
fn cat_returns_any_range_of_the_original() {
    let repo = Repo::new();
    let data = bytes(1_500_000, 1);
    let file = repo.write_file("data.bin", &data);
    let cid = repo.run_text(&["add", "-q", "--chunker", "size-65536", file.to_str().unwrap()]);
    let cid = cid.trim();
    assert_eq!(repo.run(&["cat", cid]), data);
    for (offset, length) in [(0usize, 1usize), (65_535, 2), (1_000_000, 400_000), (1_499_999, 10)] {
        let got = repo.run(&[
            "cat",
            "--offset",
            &offset.to_string(),
            "--length",
            &length.to_string(),
            cid,
        ]);
        assert_eq!(
            got,
            data[offset..(offset + length).min(data.len())],
            "{offset}+{length}"
        );
    }
}

#[test]
fn bad_input_fails_with_one_line_naming_the_problem() {
    let repo = Repo::new();
    let cases: [(&[&str], &str); 6] = [
        (&["cat", "not-a-cid"], "invalid CID"),
        (
            &["cat", "bafyreigdmqpykrgxyaxtlafqpqhzrb7qy2rh75nldvfd4tucqmqqme5yje"],
            "unsupported codec",
        ),
        (
            &["cat", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"],
            "block not found",
        ),
        (&["add", "--chunker", "rabin", "Cargo.toml"], "chunker"),
        (&["add", "/no/such/file"], "cannot open /no/such/file"),
        (&["car", "import", "Cargo.toml"], "invalid CAR"),
    ];
    for (args, expected) in cases {
        let output = repo.fail(args);
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
    }
    let hello = repo.write_file("h.txt", b"hello world\n");
    let cid = repo.run_text(&["add", "-q", hello.to_str().unwrap()]);
    let stderr = String::from_utf8(repo.fail(&["cat", "--offset", "13", cid.trim()]).stderr).unwrap();
    assert!(stderr.contains("past the end"), "{stderr}");
}

#[test]
fn directories_list_and_paths_resolve_after_a_car_import() {
    let repo = Repo::new();
    let car = fixture("gateway-conformance/path_gateway_unixfs/dir-with-files.car");
    let out = repo.run_text(&["car", "import", &car]);
    let root = out.trim().strip_prefix("imported ").unwrap().to_owned();
    let listing = repo.run_text(&["ls", &root]);
    let names: Vec<&str> = listing.lines().map(|l| l.rsplit(' ').next().unwrap()).collect();
    assert_eq!(names, ["ascii-copy.txt", "ascii.txt", "hello.txt", "multiblock.txt"]);
    assert_eq!(repo.run(&["cat", &format!("/ipfs/{root}/hello.txt")]), b"hello world\n");
    assert_eq!(repo.run(&["car", "export", &root]), std::fs::read(&car).unwrap());
    let stderr = String::from_utf8(repo.fail(&["cat", &format!("{root}/nope.txt")]).stderr).unwrap();
    assert!(stderr.contains("no link named \"nope.txt\""), "{stderr}");
}

#[test]
fn corrupted_blocks_are_named_by_verify_and_never_served() {
    let repo = Repo::new();
    let file = repo.write_file("data.bin", &bytes(5000, 2));
    let cid = repo.run_text(&[
        "add",
        "-q",
        "--cid-version",
        "1",
        "--chunker",
        "size-1024",
        file.to_str().unwrap(),
    ]);
    let cid = cid.trim();
    assert!(repo.command(&["repo", "verify"]).status().unwrap().success());
    // Corrupt the first leaf in place, in the pack that holds it.
    let data = bytes(5000, 2);
    let packs: Vec<_> = std::fs::read_dir(repo.path().join("blocks")).unwrap().collect();
    assert_eq!(packs.len(), 1, "one import, one pack");
    let pack = packs.into_iter().next().unwrap().unwrap().path();
    let mut packed = std::fs::read(&pack).unwrap();
    let at = packed.windows(1024).position(|w| w == &data[..1024]).unwrap();
    packed[at..at + 1024].fill(0);
    std::fs::write(&pack, packed).unwrap();
    let output = repo.fail(&["repo", "verify"]);
    let bad = String::from_utf8(output.stdout).unwrap();
    // The first leaf's CID: that of a file of just those bytes, added elsewhere the same way.
    let elsewhere = Repo::new();
    let first = elsewhere.write_file("first.bin", &data[..1024]);
    let leaf = elsewhere.run_text(&["add", "-q", "--cid-version", "1", first.to_str().unwrap()]);
    assert_eq!(bad, format!("corrupted {}\n", leaf.trim()));
    let output = repo.fail(&["cat", cid]);
    assert!(
        String::from_utf8(output.stderr)
            .unwrap()
            .contains("does not match its CID")
    );
    assert!(
        output.stdout.len() < 5000,
        "the corrupted block's bytes were not served"
    );
}

#[test]
fn pins_gc_and_unpins() {
    let repo = Repo::new();
    let kept = repo.write_file("kept.bin", &bytes(300_000, 3));
    let dropped = repo.write_file("dropped.bin", &bytes(300_000, 4));
    let kept = repo.run_text(&["add", "-q", kept.to_str().unwrap()]).trim().to_owned();
    let dropped = repo
        .run_text(&["add", "-q", "--pin=false", dropped.to_str().unwrap()])
        .trim()
        .to_owned();
    assert_eq!(repo.run_text(&["pin", "ls"]), format!("{kept} recursive\n"));
    let removed = repo.run_text(&["repo", "gc"]);
    assert_eq!(
        removed.lines().count(),
        3,
        "two leaves and the root of the unpinned file: {removed}"
    );
    assert!(!repo.command(&["cat", &dropped]).output().unwrap().status.success());
    assert_eq!(repo.run(&["cat", &kept]).len(), 300_000);
    repo.run(&["pin", "rm", &kept]);
    assert_eq!(repo.run_text(&["pin", "ls"]), "");
    repo.run(&["pin", "add", &kept]);
    assert_eq!(repo.run_text(&["pin", "ls"]), format!("{kept} recursive\n"));
}

#[test]
fn serve_answers_health_on_its_port() {
    let repo = Repo::new();
    let server = Server::start(&repo);
    let body = ureq_get(&format!("{}/health", server.base));
    assert!(body.contains("\"status\":\"ok\""), "{body}");
}

/// A minimal HTTP/1.1 GET over a TCP stream (keeps this test free of an HTTP client).
#[test]
fn serve_runs_as_many_http_workers_as_asked() {
    // Each worker is a thread of actix's system; the name is cut to 15 bytes by the kernel.
    let count = |server: &Server| {
        std::fs::read_dir(format!("/proc/{}/task", server.child.id()))
            .unwrap()
            .filter(|task| {
                let comm = std::fs::read_to_string(task.as_ref().unwrap().path().join("comm")).unwrap_or_default();
                comm.trim_end() == "actix-rt|system"
            })
            .count()
    };
    // The workers start as the server runs, just after it says where it listens.
    let workers = |server: &Server, expected: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while count(server) != expected && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        count(server)
    };
    let repo = Repo::new();
    let three = Server::start_with(&repo, &["--http-workers", "3"]);
    assert_eq!(workers(&three, 3), 3);
    drop(three);
    let one = Server::start_with(&repo, &["--http-workers", "1"]);
    assert_eq!(workers(&one, 1), 1);
    assert!(ureq_get(&format!("{}/health", one.base)).contains("ok"));
}

fn ureq_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[test]
fn a_server_whose_output_is_no_longer_read_serves_on_and_stops_on_sigterm() {
    use std::io::BufRead;
    let repo = Repo::new();
    let mut child = repo
        .command(&["serve", "--listen", "127.0.0.1:0", "--auth", "off"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first.trim().strip_prefix("listening on ").unwrap().to_owned();
    // Both readers go away (a log pipe whose reader died): every line logged from now on fails.
    drop(child.stderr.take());
    assert!(ureq_get(&format!("{base}/health")).contains("ok"));
    assert!(ureq_get(&format!("{base}/health")).contains("ok"));
    let status =
        status_after_sigterm(&mut child).expect("the server did not stop after SIGTERM once its output was not read");
    assert!(status.success(), "a graceful stop exits 0, got {status}");
}

/// Sends SIGTERM and waits up to 30 s for the process to end: its status, or None (then it is
/// killed).
fn status_after_sigterm(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let repo = Repo::new();
    let mut server = Server::start(&repo);
    let status = status_after_sigterm(&mut server.child).expect("the server did not stop after SIGTERM");
    assert!(status.success(), "a graceful stop exits 0, got {status}");
}

#[test]
fn a_bad_config_file_names_the_key() {
    let repo = Repo::new();
    let config = repo.write_file("config.toml", b"listen = \"127.0.0.1:0\"\nmax_upload_bytes = 0\n");
    let output = repo.fail(&["--config", config.to_str().unwrap(), "serve"]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("error: invalid configuration: max_upload_bytes"),
        "{stderr}"
    );
}

/// A `serve` that cannot start says why in one line and exits 1: no panic, no backtrace.
#[test]
fn every_start_up_failure_is_one_line_and_exit_1() {
    let repo = Repo::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let not_a_dir = repo.write_file("a-file", b"");
    let config = repo.write_file("bad.toml", b"[http]\nlisten = \"127.0.0.1:0\"\nlisen = 1\n");
    let cases: [(Vec<&str>, String); 4] = [
        (
            vec!["serve", "--listen", &taken],
            format!("error: cannot listen on {taken}: address in use"),
        ),
        (
            // TEST-NET-1: never an address of this machine.
            vec!["serve", "--listen", "192.0.2.1:8080"],
            "error: cannot listen on 192.0.2.1:8080: address not available (not an address of this machine)".into(),
        ),
        (
            vec![
                "--data-dir",
                not_a_dir.to_str().unwrap(),
                "serve",
                "--listen",
                "127.0.0.1:0",
            ],
            format!(
                "error: invalid configuration: data dir {} is not a directory",
                not_a_dir.display()
            ),
        ),
        (
            vec!["--config", config.to_str().unwrap(), "serve"],
            "error: invalid configuration: ".into(),
        ),
    ];
    for (args, expected) in cases {
        let output = repo.command(&args).env("RUST_BACKTRACE", "1").output().unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line, got {stderr}");
        assert!(stderr.starts_with(&expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn the_committed_openapi_document_is_current() {
    let repo = Repo::new();
    let generated = repo.run_text(&["openapi"]);
    let path = format!("{}/../../openapi/openapi.json", env!("CARGO_MANIFEST_DIR"));
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        generated.trim_end() == committed.trim_end(),
        "openapi/openapi.json is out of date: run `ipfs-stream openapi > openapi/openapi.json`"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

/// Starts `serve` under a shell that first runs `limits` (ulimit options); gives the server and
/// its log (plain text, as it goes to a pipe), to read once the server is dropped.
fn serve_with_open_files(repo: &Repo, limits: &str) -> (Server, std::process::ChildStderr) {
    use std::io::BufRead;
    let script = format!("ulimit {limits} && exec \"$0\" serve --listen 127.0.0.1:0");
    let mut child = std::process::Command::new("sh")
        .args(["-c", &script, common::BINARY])
        .env("IPFS_STREAM_DATA_DIR", repo.path())
        .env_remove("IPFS_STREAM_KUBO_API")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .strip_prefix("listening on ")
        .expect("a 'listening on' line")
        .to_owned();
    (Server { child, base }, stderr)
}

/// The soft and hard "Max open files" of a /proc/<pid>/limits.
fn open_files(limits: &str) -> (String, String) {
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

#[test]
fn serve_raises_its_open_files_limit_and_keeps_webrtc_within_it() {
    use std::io::Read;
    // Every WebRTC viewer holds a socket: a soft limit of 256 would stop the server near 200.
    let repo = Repo::new();
    let (server, _) = serve_with_open_files(&repo, "-Sn 256");
    let (soft, hard) = open_files(&std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap());
    let (_, our_hard) = open_files(&std::fs::read_to_string("/proc/self/limits").unwrap());
    assert_eq!(hard, our_hard, "the hard limit is the one the server was given");
    assert_eq!(soft, hard, "the soft limit is raised to the hard one");
    drop(server);

    // A hard limit of 300 leaves room for 75 viewers (two files each), not the default 2000.
    let (server, mut stderr) = serve_with_open_files(&repo, "-n 300");
    drop(server);
    let mut logged = String::new();
    stderr.read_to_string(&mut logged).unwrap();
    let line = logged
        .lines()
        .find(|l| l.contains("webrtc_max_connections lowered"))
        .unwrap_or_else(|| panic!("{logged}"));
    assert!(
        line.contains("configured=2000") && line.contains("max_connections=75"),
        "{line}"
    );
}
