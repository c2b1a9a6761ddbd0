//! Landfall against a secured broker: `KAFKA_SECURITY=sasl_ssl scripts/kafka start` (SASL_SSL
//! with SCRAM-SHA-512, a CA the script made, the StandardAuthorizer with no access without an
//! ACL). A secured run lands what the plaintext run lands, an independent client (confluent-
//! kafka's own librdkafka, reading the same property file) counts the same records, each
//! refusal ends the command within seconds naming what is missing, and no password shows in
//! any output. kcat reads the same property file and counts the same records.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::harness::{consume_cmd, dirs, log_stderr, produce_cmd, verify_with, Dirs};
use support::output::{parquet_files, read_rejects, read_windows};
use support::*;

/// The secured broker's bootstrap address and its client property files.
struct Secured {
    bootstrap: String,
    clients: PathBuf,
}

fn secured() -> &'static Secured {
    static SECURED: OnceLock<Secured> = OnceLock::new();
    SECURED.get_or_init(|| {
        let out = kafka_script(&["start"]);
        let bootstrap = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let port = bootstrap.rsplit(':').next().unwrap().to_string();
        let home = std::env::var_os("KAFKA_SECURED_HOME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(format!("target/kafka-{port}")));
        Secured {
            bootstrap,
            clients: home.join("clients"),
        }
    })
}

/// `scripts/kafka ARGS` in secured mode; fails the test if it fails.
fn kafka_script(args: &[&str]) -> Output {
    let out = Command::new(repo_root().join("scripts/kafka"))
        .args(args)
        .env("KAFKA_SECURITY", "sasl_ssl")
        .output()
        .expect("run scripts/kafka");
    assert!(
        out.status.success(),
        "KAFKA_SECURITY=sasl_ssl scripts/kafka {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A client property file of the secured broker: admin, landfall, denied, wrong-password,
/// untrusted-ca, or a user made by `user_with_acls`.
fn client(name: &str) -> PathBuf {
    secured().clients.join(format!("{name}.properties"))
}

/// The password a property file holds.
fn password(file: &Path) -> String {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("sasl.password=").map(str::to_string))
        .expect("sasl.password in the property file")
}

/// Every password the secured broker's users have, the wrong one included.
fn passwords() -> Vec<String> {
    ["admin", "landfall", "denied", "wrong-password"]
        .iter()
        .map(|n| password(&client(n)))
        .collect()
}

/// A user with exactly these ACLs (each a list of `kafka-acls` arguments), made once per
/// broker; its property file.
fn user_with_acls(name: &str, acls: &[&[&str]]) -> PathBuf {
    let file = client(name);
    if !file.exists() {
        let pw = format!("pw-{name}-{}", std::process::id());
        kafka_script(&["add-user", name, &pw]);
        let principal = format!("User:{name}");
        for acl in acls {
            let mut args = vec![
                "admin",
                "org.apache.kafka.tools.AclCommand",
                "--add",
                "--allow-principal",
                &principal,
            ];
            args.extend_from_slice(acl);
            kafka_script(&args);
        }
    }
    file
}

/// `landfall ARGS` against the secured broker through `file`.
fn secure(file: &Path, args: &[&str]) -> Command {
    let mut cmd = landfall(args);
    through(&mut cmd, file);
    cmd
}

/// Makes `cmd` (built on `landfall()`) talk to the secured broker through `file`.
fn through(cmd: &mut Command, file: &Path) {
    cmd.env_remove("LANDFALL_BROKERS")
        .env("LANDFALL_KAFKA_CONFIG_FILE", file);
}

/// Runs `cmd`, expecting success; returns everything it printed.
fn run_logged(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// Committed records of `topic` counted by kcat with the property file `file`. Debian's kcat
/// links librdkafka 2.0.2, whose SCRAM Kafka 4 rejects (librdkafka#4895): it runs here on the
/// newer librdkafka that confluent-kafka's wheel carries.
fn kcat_count(file: &Path, topic: &str) -> u64 {
    let libs = Command::new(python())
        .args([
            "-c",
            "import confluent_kafka, glob, os; print(glob.glob(os.path.dirname(\
             confluent_kafka.__file__) + '.libs/librdkafka*.so*')[0])",
        ])
        .output()
        .expect("find confluent-kafka's librdkafka");
    let lib = String::from_utf8(libs.stdout).unwrap().trim().to_string();
    assert!(!lib.is_empty(), "no librdkafka in confluent-kafka's wheel");
    let dir = scratch();
    std::os::unix::fs::symlink(&lib, dir.path().join("librdkafka.so.1")).unwrap();
    let out = Command::new("kcat")
        .env("LD_LIBRARY_PATH", dir.path())
        .args([
            "-F",
            path_str(file),
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
        ])
        .args(["-X", "isolation.level=read_committed", "-f", "%o\n"])
        .output()
        .expect("run kcat (scripts/test installs it)");
    assert!(
        out.status.success(),
        "kcat failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count() as u64
}

fn assert_no_secret(text: &str, what: &str) {
    for pw in passwords() {
        assert!(!text.contains(&pw), "{what} shows a password:\n{text}");
    }
}

/// Footers minus the topic ID, which differs between two brokers.
fn footers(d: &Dirs) -> Vec<(PathBuf, Vec<(String, String)>)> {
    parquet_files(&d.report)
        .into_iter()
        .map(|rel| {
            let f = landfall::readback::read_window_file(
                &landfall::store::Root::Local(d.report.clone()),
                &d.report.join(&rel),
            )
            .unwrap()
            .footer
            .0;
            let kept = f
                .into_iter()
                .filter(|(k, _)| k != "landfall.topic_id")
                .collect();
            (rel, kept)
        })
        .collect()
}

/// The same golden records produced and consumed on the plaintext broker and, through
/// `landfall.properties`, on the secured one: the same window files with the same windows,
/// footers (but the topic ID) and rejects; `verify` clean; confluent-kafka counts what
/// Landfall counted; no password in any log, in `/metrics` or in `--help`.
#[test]
fn secured_run_lands_what_the_plaintext_run_lands() {
    let file = client("landfall");
    let topic = unique_topic("secured");
    let count = 3000;
    let plain = dirs();
    run_ok(produce_cmd(&topic, 3, count, 2024, 0));
    run_ok(consume_cmd(&topic, "sec-g", &plain, true));

    let sec = dirs();
    let mut logs = String::new();
    let mut produce = produce_cmd(&topic, 3, count, 2024, 0);
    through(&mut produce, &file);
    produce.env("LANDFALL_LOG", "debug");
    logs += &run_logged(produce, "secured produce");
    let mut consume = consume_cmd(&topic, "sec-g", &sec, true);
    through(&mut consume, &file);
    // librdkafka's own debug lines pass through the log too.
    consume
        .env("LANDFALL_LOG", "debug")
        .env("LANDFALL_KAFKA_DEBUG", "security,broker,protocol,conf");
    logs += &run_logged(consume, "secured consume");

    let v = verify_with(
        &secured().bootstrap,
        Some(&file),
        &topic,
        Some("sec-g"),
        &sec.report,
        &sec.rejects,
    );
    assert_eq!(v.exit, Some(0), "verify: {}\n{}", v.report, v.stderr);
    logs += &v.stderr;
    assert_eq!(v.int("pending_records"), 0, "{}", v.report);

    let got = parquet_files(&sec.report);
    assert!(!got.is_empty(), "the secured run landed nothing");
    assert_eq!(
        got,
        parquet_files(&plain.report),
        "window file names differ"
    );
    assert_eq!(read_windows(&sec.report), read_windows(&plain.report));
    assert_eq!(footers(&sec), footers(&plain));
    assert_eq!(read_rejects(&sec.rejects), read_rejects(&plain.rejects));

    let probed = kafka_probe(&file, &["count", &topic]).as_u64().unwrap();
    assert_eq!(
        probed,
        v.int("records"),
        "confluent-kafka and verify disagree"
    );
    assert_eq!(
        kcat_count(&file, &topic),
        probed,
        "kcat and confluent-kafka disagree"
    );
    let landed = v.int("counted") + v.int("rejected");
    assert_eq!(probed, landed, "not every committed record landed");

    // /metrics of a running secured consumer, and --help with the password in the environment.
    let scratch = dirs();
    let mut serve = consume_cmd(&topic, "sec-metrics", &scratch, false);
    through(&mut serve, &file);
    http_on_any_port(&mut serve);
    let log = log_stderr(&mut serve, scratch.tmp.path(), "serve");
    let mut child = ChildGuard::spawn(serve);
    let port = bound_port(&log, Duration::from_secs(60));
    let (_, metrics) = http_get(port, "/metrics").expect("/metrics answers");
    child.stop(
        libc::SIGTERM,
        Duration::from_secs(30),
        "consume",
        Some(&log),
    );
    logs += &metrics;
    logs += &std::fs::read_to_string(&log).unwrap();
    let pw = password(&file);
    let help = landfall(&["consume", "--help"])
        .env("LANDFALL_SASL_PASSWORD", &pw)
        .env("LANDFALL_SSL_KEY_PASSWORD", &pw)
        .output()
        .unwrap();
    logs += &String::from_utf8_lossy(&help.stdout);
    assert!(logs.contains("--sasl-password"), "--help lists the flag");
    assert_no_secret(&logs, "a secured run");
}

/// The typed flags reach the same broker as the property file does.
#[test]
fn typed_flags_authenticate() {
    let file = client("landfall");
    let topic = unique_topic("secured-flags");
    let pw_file = scratch();
    let pw_path = pw_file.path().join("password");
    std::fs::write(&pw_path, format!("{}\n", password(&file))).unwrap();
    let ca = secured().clients.join("../tls/ca.pem");
    let out = run_logged(
        {
            let mut c = landfall(&[
                "produce",
                "--topic",
                &topic,
                "--create-topic",
                "--count",
                "200",
                "--security-protocol",
                "sasl_ssl",
                "--sasl-mechanism",
                "SCRAM-SHA-512",
                "--sasl-username",
                "landfall",
                "--sasl-password-file",
                path_str(&pw_path),
                "--ssl-ca-location",
                path_str(&ca),
            ]);
            c.env("LANDFALL_BROKERS", &secured().bootstrap);
            c
        },
        "produce with typed flags",
    );
    assert!(out.contains("committed 200 records"), "{out}");
    assert_no_secret(&out, "produce with typed flags");
}

/// Runs `cmd`; it must fail with exit 1 within 15 s, say each of `says`, and show no password.
fn refused(mut cmd: Command, what: &str, says: &[&str]) {
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let took = started.elapsed();
    let text = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: exit {:?}\n{text}",
        out.status
    );
    let last = text
        .lines()
        .rev()
        .find(|l| l.contains("error:"))
        .unwrap_or("");
    for s in says {
        assert!(
            last.contains(s),
            "{what} should say {s:?}; it said:\n{text}"
        );
    }
    assert!(
        took < Duration::from_secs(15),
        "{what} took {took:?} to give up:\n{text}"
    );
    assert_no_secret(&text, what);
    eprintln!("{what}: exit 1 after {:.1} s: {last}", took.as_secs_f64());
}

/// Each refusal ends the command within seconds with exit 1 and a message that names what was
/// refused, for which resource, and the ACL to add: a wrong password, a CA the client does
/// not trust, and each missing ACL of the consumer (topic describe, topic read, group read)
/// and of the transactional producer (transactional id write, topic write).
#[test]
fn refusals_end_fast_and_name_what_is_missing() {
    let topic = unique_topic("refused");
    run_ok(secure(
        &client("landfall"),
        &[
            "produce",
            "--topic",
            &topic,
            "--create-topic",
            "--count",
            "100",
        ],
    ));
    let d = dirs();
    let consume = |file: &Path, group: &str| {
        let mut c = consume_cmd(&topic, group, &d, true);
        through(&mut c, file);
        c
    };
    let produce = |file: &Path| secure(file, &["produce", "--topic", &topic, "--count", "10"]);

    refused(
        produce(&client("wrong-password")),
        "a wrong password",
        &["refused the login as User:landfall", "invalid credentials"],
    );
    refused(
        consume(&client("untrusted-ca"), "g-ca"),
        "an untrusted CA",
        &["TLS certificate is not trusted", "--ssl-ca-location"],
    );
    refused(
        consume(&client("denied"), "g-denied"),
        "no ACL at all",
        &[
            &format!("not authorised to describe topic \"{topic}\" as User:denied"),
            &format!("--operation Describe --topic {topic}"),
        ],
    );
    let no_group = user_with_acls(
        "lf-no-group-read",
        &[&[
            "--operation",
            "Read",
            "--operation",
            "Describe",
            "--topic",
            "*",
        ]],
    );
    refused(
        consume(&no_group, "g-nogroup"),
        "no group Read",
        &[
            "not authorised to read group \"g-nogroup\" as User:lf-no-group-read",
            "--operation Read --operation Describe --group g-nogroup",
        ],
    );
    let no_read = user_with_acls(
        "lf-no-topic-read",
        &[
            &["--operation", "Describe", "--topic", "*"],
            &[
                "--operation",
                "Read",
                "--operation",
                "Describe",
                "--group",
                "*",
            ],
        ],
    );
    refused(
        consume(&no_read, "g-noread"),
        "no topic Read",
        &[&format!(
            "not authorised to read topic \"{topic}\" (group \"g-noread\") as User:lf-no-topic-read"
        )],
    );
    let verify = |file: &Path| {
        let mut c = landfall(&["verify", "--topic", &topic, "--group", "g-noread"]);
        c.args(["--output-dir", path_str(&d.report)]);
        through(&mut c, file);
        c
    };
    refused(
        verify(&no_read),
        "verify without topic Read",
        &[&format!("not authorised to read topic \"{topic}\"")],
    );
    let no_txn = user_with_acls(
        "lf-no-txn-write",
        &[&[
            "--operation",
            "Write",
            "--operation",
            "Describe",
            "--topic",
            "*",
        ]],
    );
    refused(
        produce(&no_txn),
        "no transactional id Write",
        &[
            "not authorised to write with transactional id \"landfall-producer\"",
            "--transactional-id landfall-producer",
        ],
    );
    let no_write = user_with_acls(
        "lf-no-topic-write",
        &[
            &["--operation", "Describe", "--topic", "*"],
            &[
                "--operation",
                "Write",
                "--operation",
                "Describe",
                "--transactional-id",
                "*",
            ],
        ],
    );
    refused(
        produce(&no_write),
        "no topic Write",
        &[
            &format!("not authorised to write to topic \"{topic}\" as User:lf-no-topic-write"),
            &format!("--operation Write --operation Describe --topic {topic}"),
        ],
    );
}
