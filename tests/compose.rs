//! The compose stack cannot drift from the binary: every `landfall` service of
//! `docker-compose.yaml` (the `s3` profile's too) runs here natively, with its entrypoint,
//! command and environment exactly as `docker-compose config` resolves them. Only what names
//! the containers' world is replaced: the broker address (`kafka:19092`), the S3 endpoint
//! (`http://s3:80`), the paths under `/data` and `/app/data`, the binary's path, and the topic
//! (a fresh one, so the test shares nothing with other runs). The producer and the consumers
//! must start, answer the image's own `HEALTHCHECK` command on the ports compose publishes, the
//! consumers must land windows, and a real Prometheus with the repository's scrape config must
//! scrape them under the same job names. No Docker engine is needed.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::harness::*;
use support::prometheus::{query, tool, Prometheus};
use support::s3::S3;
use support::*;

/// `docker-compose config` with every profile, as JSON (through PyYAML, which
/// docker-compose itself depends on).
fn compose_config() -> serde_json::Value {
    let compose = tool("LANDFALL_DOCKER_COMPOSE", "docker-compose");
    let out = Command::new(compose)
        .current_dir(repo_root())
        .args(["-f", "docker-compose.yaml", "--profile", "s3", "config"])
        .output()
        .expect("run docker-compose config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write as _;
    py.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let json = py.wait_with_output().unwrap();
    assert!(
        json.status.success(),
        "PyYAML could not read the compose config"
    );
    serde_json::from_slice(&json.stdout).unwrap()
}

/// The image's `HEALTHCHECK` command (the JSON array after `CMD` in the Dockerfile).
fn image_healthcheck() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let at = dockerfile
        .find("HEALTHCHECK")
        .expect("the Dockerfile has a HEALTHCHECK");
    let cmd = &dockerfile[at..];
    let array = &cmd[cmd.find("CMD [").unwrap() + 4..];
    let array = &array[..=array.find(']').unwrap()];
    serde_json::from_str(array).unwrap()
}

/// The image's `ENTRYPOINT`.
fn image_entrypoint() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let line = dockerfile
        .lines()
        .find(|l| l.starts_with("ENTRYPOINT"))
        .expect("the Dockerfile has an ENTRYPOINT");
    serde_json::from_str(line.trim_start_matches("ENTRYPOINT").trim()).unwrap()
}

/// What the container world is called here.
struct Host {
    brokers: String,
    topic: String,
    data: PathBuf,
    s3_endpoint: String,
}

impl Host {
    /// A value from the compose file with the container's names replaced by the host's.
    fn native(&self, value: &str) -> String {
        let bin = landfall_bin();
        // `$$` is compose's escape for one `$`, which the container's shell then sees.
        value
            .replace("$$", "$")
            .replace("/usr/local/bin/landfall", path_str(&bin))
            .replace("/app/data/", "\u{0}app\u{0}")
            .replace("/data/", &format!("{}/", self.data.display()))
            .replace("\u{0}app\u{0}", &format!("{}/data/", repo_root().display()))
            .replace("kafka:19092", &self.brokers)
            .replace("http://s3:80", &self.s3_endpoint)
    }

    /// A service's command line and environment, natively.
    fn command(
        &self,
        service: &serde_json::Value,
        name: &str,
    ) -> (Command, BTreeMap<String, String>) {
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array().map_or_else(Vec::new, |a| {
                a.iter().map(|s| s.as_str().unwrap().to_string()).collect()
            })
        };
        let mut argv = match service.get("entrypoint").filter(|e| !e.is_null()) {
            Some(e) => strings(e),
            None => image_entrypoint(),
        };
        argv.extend(strings(&service["command"]));
        let argv: Vec<String> = argv.iter().map(|a| self.native(a)).collect();
        let mut env: BTreeMap<String, String> = service["environment"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), self.native(v.as_str().unwrap())))
            .collect();
        env.insert("LANDFALL_TOPIC".into(), self.topic.clone());
        env.insert("HOSTNAME".into(), format!("compose-{name}"));
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(repo_root()).envs(&env);
        (cmd, env)
    }
}

/// Runs the image's HEALTHCHECK command with a service's environment; whether it passed.
fn healthy(env: &BTreeMap<String, String>) -> bool {
    let check = image_healthcheck();
    Command::new(&check[0])
        .args(&check[1..])
        .envs(env)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn every_landfall_service_of_the_compose_file_runs_natively() {
    let config = compose_config();
    let services = config["services"].as_object().unwrap();
    let landfall: Vec<&String> = services
        .iter()
        .filter(|(_, s)| {
            s["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("landfall:"))
        })
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        landfall,
        ["consumer", "consumer-s3", "producer"],
        "services changed: update this test"
    );

    let s3 = S3::shared();
    let endpoint = s3
        .env
        .iter()
        .find(|(k, _)| k == "AWS_ENDPOINT_URL")
        .map(|(_, v)| v.clone())
        .unwrap();
    let d = dirs();
    let host = Host {
        brokers: brokers(),
        topic: unique_topic("compose"),
        data: d.tmp.path().join("data"),
        s3_endpoint: endpoint,
    };
    // topic-init's partitions; records already in the topic, dated 2024, so that windows close
    // as soon as the producer's real-time records pass them.
    let init = services["topic-init"]["command"].as_array().unwrap();
    let at = init.iter().position(|a| a == "--partitions").unwrap();
    let partitions: u32 = init[at + 1].as_str().unwrap().parse().unwrap();
    run_ok(produce_cmd(&host.topic, partitions, 3_000, 5, 0));

    // One service at a time where compose would give each its own network namespace: both
    // consumers listen on the container port 9464.
    let start = |name: &str| {
        let (mut cmd, env) = host.command(&services[name], name);
        let log = log_stderr(&mut cmd, d.tmp.path(), name);
        let mut child = ChildGuard::spawn(cmd);
        wait_until(
            &format!("{name}'s health check"),
            Duration::from_secs(60),
            || {
                assert!(
                    child.child().try_wait().unwrap().is_none(),
                    "{name} exited:\n{}",
                    read_log(&log)
                );
                healthy(&env)
            },
        );
        (child, log)
    };
    let stop = |name: &str, (mut child, log): (ChildGuard, PathBuf)| {
        let status = child.stop(libc::SIGTERM, Duration::from_secs(30), name, Some(&log));
        assert!(
            status.success(),
            "{name} exited with {status}:\n{}",
            read_log(&log)
        );
    };
    let producer = start("producer");
    let consumer = start("consumer");
    let report = host.data.join("views_report");
    wait_until(
        "the consumer landed windows",
        Duration::from_secs(90),
        || !support::output::parquet_files(&report).is_empty(),
    );

    // The repository's scrape config, its job names kept, its targets on this host.
    let prom_config = std::fs::read_to_string(repo_root().join("prometheus/prometheus.yml"))
        .unwrap()
        .replace(
            "dns_sd_configs:\n      - names: [\"consumer\"]\n        type: A\n        port: 9464\n        refresh_interval: 15s",
            "static_configs:\n      - targets: [\"127.0.0.1:9464\"]",
        )
        .replace("producer:9465", "127.0.0.1:9465")
        .replace("scrape_interval: 5s", "scrape_interval: 1s")
        .replace("scrape_timeout: 5s", "scrape_timeout: 1s");
    assert!(
        prom_config.contains("127.0.0.1:9464"),
        "the scrape config changed: {prom_config}"
    );
    let prom = Prometheus::start(&prom_config, d.tmp.path());
    for job in ["landfall-consumer", "landfall-producer"] {
        wait_until(
            &format!("Prometheus scraping {job}"),
            Duration::from_secs(60),
            || !query(prom.port, &format!("up{{job=\"{job}\"}} == 1")).is_empty(),
        );
    }
    prom.stop();
    stop("consumer", consumer);

    let consumer_s3 = start("consumer-s3");
    wait_until(
        "consumer-s3 landed windows",
        Duration::from_secs(90),
        || {
            s3.keys("s3://landfall/report")
                .iter()
                .any(|k| k.contains(&host.topic) && k.ends_with(".parquet"))
        },
    );
    stop("consumer-s3", consumer_s3);
    stop("producer", producer);
}
