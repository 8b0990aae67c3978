//! Starts a private `redis-server` for the demo, the benchmark and the tests: a free
//! loopback port, a temporary directory, no RDB snapshots, AOF when asked; killed on drop.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting server may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a server could not be started.
#[derive(Debug)]
pub enum LocalRedisError {
    /// No `redis-server` on `PATH`.
    NotInstalled,
    /// It started but did not answer `PING` in time (its log says why).
    NoAnswer {
        /// The end of its log.
        log: String,
    },
    /// The operating system refused (temporary directory, port, process).
    Io(std::io::Error),
}

impl fmt::Display for LocalRedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalRedisError::NotInstalled => write!(
                f,
                "redis-server is not on PATH: run scripts/test.sh (it installs it) or \
                 `apt-get install -y redis-server`"
            ),
            LocalRedisError::NoAnswer { log } => {
                write!(f, "redis-server did not answer PING; its log:\n{log}")
            }
            LocalRedisError::Io(e) => write!(f, "starting redis-server: {e}"),
        }
    }
}

impl std::error::Error for LocalRedisError {}

impl From<std::io::Error> for LocalRedisError {
    fn from(e: std::io::Error) -> Self {
        LocalRedisError::Io(e)
    }
}

/// A `redis-server` child process in its own temporary directory.
pub struct LocalRedis {
    child: Option<Child>,
    port: u16,
    append_only: bool,
    dir: tempfile::TempDir,
}

impl LocalRedis {
    /// Starts a server; with `append_only`, every write is fsynced to the AOF before Redis
    /// answers (`appendfsync always`), so a SIGKILL loses nothing acknowledged.
    pub fn start(append_only: bool) -> Result<Self, LocalRedisError> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let mut server = LocalRedis {
            child: None,
            port,
            append_only,
            dir,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), LocalRedisError> {
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--save")
            .arg("")
            .arg("--logfile")
            .arg("redis.log")
            .arg("--appendonly")
            .arg(if self.append_only { "yes" } else { "no" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.append_only {
            command.arg("--appendfsync").arg("always");
        }
        let child = command.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LocalRedisError::NotInstalled,
            _ => LocalRedisError::Io(e),
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if ping(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        self.kill();
        Err(LocalRedisError::NoAnswer { log })
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's directory (AOF, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server with SIGKILL and waits for it to go.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory (after [`kill`](Self::kill)).
    pub fn restart(&mut self) -> Result<(), LocalRedisError> {
        self.kill();
        self.spawn()
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free a moment ago (the OS picks it).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0; 7];
    // A server still loading its AOF answers -LOADING: not ready yet.
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
