//! The `api` target: request bodies sent to a real `attune server` on a fresh data dir.

use crate::gen::{self, Rng};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    url: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(attune: &Path) -> Result<Server, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    let child = Command::new(attune)
        .arg("--data-dir")
        .arg(&data)
        .args(["server", "--listen", "127.0.0.1:0", "--workers", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", attune.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        if let Ok(text) = std::fs::read_to_string(data.join("server.json")) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                if let Some(u) = v["url"].as_str() {
                    break u.to_string();
                }
            }
        }
        if Instant::now() > deadline {
            return Err("the server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let token = std::fs::read_to_string(data.join("admin.token"))
        .map_err(|e| e.to_string())?
        .trim()
        .to_string();
    Ok(Server {
        child,
        url,
        token,
        _dir: dir,
    })
}

/// One body for one route: mostly shaped like the real thing, sometimes raw mutations.
fn body(rng: &mut Rng, seeds: &[Vec<u8>], shaped: &Value) -> Vec<u8> {
    if rng.one_in(3) {
        return gen::mutate(rng, seeds);
    }
    let mut v = shaped.clone();
    if let Some(o) = v.as_object_mut() {
        // Replace, drop or add fields with random values.
        let keys: Vec<String> = o.keys().cloned().collect();
        for k in keys {
            match rng.below(4) {
                0 => {
                    o.insert(k, gen::value(rng, 3));
                }
                1 => {
                    o.remove(&k);
                }
                _ => {}
            }
        }
        if rng.one_in(4) {
            o.insert(gen::string(rng), gen::value(rng, 2));
        }
    }
    v.to_string().into_bytes()
}

pub fn run(budget: Duration, rng: &mut Rng, attune: Option<&Path>) -> Result<u64, String> {
    let attune = attune.ok_or("the api target needs --attune PATH")?;
    let server = start(attune)?;
    let shapes: Vec<(&str, String, &str, Value)> = vec![
        (
            "POST",
            "/api/v1/executions".into(),
            "application/json",
            json!({"action_ref": "core.echo", "parameters": {"message": "hi"}, "env_vars": {"A": "b"}, "timeout": 5}),
        ),
        (
            "POST",
            "/api/v1/tokens".into(),
            "application/json",
            json!({"role": "viewer", "name": "fz"}),
        ),
        (
            "PUT",
            "/api/v1/secrets/fz".into(),
            "application/json",
            json!({"value": "s3cr3t-value", "pack": "core"}),
        ),
        (
            "POST",
            "/api/v1/packs".into(),
            "application/octet-stream",
            Value::Null,
        ),
    ];
    let mut seeds: Vec<Vec<u8>> = shapes
        .iter()
        .map(|(_, _, _, v)| v.to_string().into_bytes())
        .collect();
    seeds.push(
        attune_core::bundle::Bundle::from_dir(Path::new("examples/mypack"))
            .map_or_else(|_| Vec::new(), |b| b.to_bytes()),
    );
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        let (method, path, ctype, shaped) = &shapes[rng.below(shapes.len())];
        let bytes = if *ctype == "application/octet-stream" {
            gen::mutate(rng, &seeds[seeds.len() - 1..])
        } else {
            body(rng, &seeds, shaped)
        };
        let req = ureq::http::Request::builder()
            .method(*method)
            .uri(format!("{}{path}", server.url))
            .header("Authorization", format!("Bearer {}", server.token))
            .header("Content-Type", *ctype)
            .body(bytes.clone())
            .map_err(|e| e.to_string())?;
        let status = match agent.run(req) {
            Ok(resp) => resp.status().as_u16(),
            Err(e) => {
                let path = crate::save(&bytes);
                return Err(format!(
                    "{method} {path:?}: no answer ({e}); the server may have died; body saved to {}",
                    path.display()
                ));
            }
        };
        if status >= 500 {
            let saved = crate::save(&bytes);
            return Err(format!(
                "{method} {path} answered {status}; body saved to {}",
                saved.display()
            ));
        }
        n += 1;
    }
    Ok(n)
}
