//! A PostgreSQL server of the tests' own: Debian's `postgresql` binaries, a cluster in a temp
//! dir, listening on a free loopback port. One server per test process (started on first use,
//! stopped when the process exits); each test gets a database of its own from [`fresh_database`].
//!
//! `initdb` refuses to run as root, so a root test process runs the server as the `postgres`
//! user the Debian package creates.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The running server of this test process.
pub struct TestPostgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    child: Mutex<Option<Child>>,
}

static SERVER: OnceLock<TestPostgres> = OnceLock::new();
static DATABASES: AtomicU64 = AtomicU64::new(0);

/// The server, started on first use.
pub fn server() -> &'static TestPostgres {
    SERVER.get_or_init(|| {
        let server = TestPostgres::start();
        // Rust runs no destructor for statics: stop the server when the test process exits.
        unsafe { libc::atexit(stop_at_exit) };
        server
    })
}

extern "C" fn stop_at_exit() {
    if let Some(server) = SERVER.get() {
        server.stop();
        let _ = std::fs::remove_dir_all(&server.dir);
    }
}

/// A URL of a new, empty database on the test server.
pub async fn fresh_database() -> String {
    server().database().await
}

/// A connection, retried while the server is still starting (it listens before it accepts).
pub async fn connect(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match sqlx::PgConnection::connect(url).await {
            Ok(connection) => return connection,
            Err(e) if Instant::now() > deadline => panic!("cannot connect to the test server at {url}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.filter_map(|d| d.ok()).map(|d| d.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|bin| bin.join("initdb").exists());
    versions.sort();
    versions.pop().expect(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: install Debian's `postgresql` package",
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The uid and gid to run the server as: ours, or `postgres`'s when we are root.
fn server_user() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !entry.is_null(),
        "running as root needs the `postgres` user of Debian's package"
    );
    Some(unsafe { ((*entry).pw_uid, (*entry).pw_gid) })
}

fn as_server_user(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    let user = server_user();
    unsafe {
        command.pre_exec(move || {
            if let Some((uid, gid)) = user
                && (libc::setgid(gid) != 0 || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // Set after the uid change (which clears it): the server dies with the test process.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        })
    }
}

impl TestPostgres {
    /// A server of the caller's own (for a test that stops or restarts it, which would pull the
    /// shared one from under the other tests); stopped when dropped.
    pub fn start_own() -> OwnPostgres {
        OwnPostgres(TestPostgres::start())
    }

    /// A URL of a new, empty database on this server.
    pub async fn database(&self) -> String {
        use sqlx::Connection;
        let name = format!("t{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed));
        let mut admin = connect(&self.url("postgres")).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        admin.close().await.ok();
        self.url(&name)
    }

    fn start() -> TestPostgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("ipfs-stream-pg-")
            .tempdir()
            .unwrap()
            .keep();
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let status = as_server_user(
            Command::new(bin.join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "-D"])
                .arg(dir.join("data"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )
        .output()
        .expect("run initdb");
        assert!(
            status.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        let server = TestPostgres {
            port: free_port(),
            dir,
            bin,
            child: Mutex::new(None),
        };
        server.launch();
        server
    }

    fn launch(&self) {
        // A thread that lives as long as the process spawns the server: the death signal follows
        // the spawning thread, and test threads end early.
        let (sent, received) = std::sync::mpsc::channel();
        let (bin, dir, port) = (self.bin.clone(), self.dir.clone(), self.port);
        std::thread::spawn(move || {
            let child = as_server_user(
                Command::new(bin.join("postgres"))
                    .arg("-D")
                    .arg(dir.join("data"))
                    .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                    .arg("-c")
                    .arg(format!("unix_socket_directories={}", dir.display()))
                    .args(["-c", "max_connections=300", "-c", "log_min_messages=fatal"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .spawn();
            sent.send(child).unwrap();
            loop {
                std::thread::park();
            }
        });
        let child = received.recv().unwrap().expect("start postgres");
        *self.child.lock().unwrap() = Some(child);
        wait_for_port(self.port);
    }

    /// `postgres://postgres@127.0.0.1:{port}/{database}`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server the way an operator's restart does (fast shutdown: sessions are cut,
    /// committed work stays) and starts it again on the same port.
    pub fn restart(&self) {
        self.stop();
        self.launch();
    }

    /// Stops the server (fast shutdown); [`TestPostgres::resume`] starts it again.
    pub fn stop(&self) {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return;
        };
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the stopped server again, on the same port.
    pub fn resume(&self) {
        self.launch();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("the test PostgreSQL server did not listen on port {port} within 30 s");
}

/// A test's own server, stopped and removed when dropped.
pub struct OwnPostgres(TestPostgres);

impl std::ops::Deref for OwnPostgres {
    type Target = TestPostgres;

    fn deref(&self) -> &TestPostgres {
        &self.0
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.0.stop();
        let _ = std::fs::remove_dir_all(&self.0.dir);
    }
}
