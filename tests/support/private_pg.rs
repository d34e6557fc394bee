//! A PostgreSQL server of the test's own (initdb in a temp dir, its own
//! port), so a test can stop and restart it without touching anyone else.

use std::path::PathBuf;
use std::process::Command;

pub struct PrivatePg {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
}

impl PrivatePg {
    pub fn start() -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                d.flatten()
                    .map(|e| e.path().join("bin"))
                    .filter(|b| b.join("initdb").exists())
                    .max()
            })
            .expect("PostgreSQL server binaries are needed: apt-get install postgresql");
        let dir = tempfile::Builder::new()
            .prefix("je-pg")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let port = free_port();
        let pg = PrivatePg { dir, port, bin };
        // initdb refuses to run as root: run it as the postgres user then.
        pg.as_owner(&["chown", "-R", "postgres:postgres"]);
        let data = pg.data();
        pg.run(&[
            &pg.tool("initdb"),
            "-D",
            &data,
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        pg.ctl("start");
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn stop(&self) {
        self.ctl("stop");
    }

    pub fn start_again(&self) {
        self.ctl("start");
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn tool(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }

    fn ctl(&self, action: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        let mut args = vec![
            self.tool("pg_ctl"),
            "-D".into(),
            self.data(),
            "-w".into(),
            "-t".into(),
            "30".into(),
        ];
        if action == "start" {
            args.extend(["-o".into(), opts, "-l".into(), log]);
        } else {
            args.extend(["-m".into(), "fast".into()]);
        }
        args.push(action.into());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&refs);
    }

    fn as_owner(&self, cmd: &[&str]) {
        if unsafe { libc::geteuid() } == 0 {
            let status = Command::new(cmd[0])
                .args(&cmd[1..])
                .arg(self.dir.path())
                .status()
                .expect("chown");
            assert!(status.success());
        }
    }

    fn run(&self, cmd: &[&str]) {
        let mut command = if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).args(cmd);
            c
        } else {
            let mut c = Command::new(cmd[0]);
            c.args(&cmd[1..]);
            c
        };
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", cmd[0]));
        assert!(
            out.status.success(),
            "{:?} failed: {}{}",
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &self.tool("pg_ctl"),
                "-D",
                &self.data(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
