//! Raw librdkafka properties (`-X key=value`, `--kafka-config-file`): applied to every client,
//! refused by name when they would break exactly-once, and never shown when they are secrets.

mod support;

use std::process::Output;

use support::harness::{consume_cmd, dirs, produce_cmd, window_file_count};
use support::*;

/// A value that must never appear in any output.
const SECRET: &str = "s3cr3t-Landfall-pw-7731";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `landfall` with `args`, which must fail at start-up with exit 2 and say each of `says`.
fn refused(args: &[&str], says: &[&str]) {
    let started = std::time::Instant::now();
    let out = landfall(args).output().unwrap();
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}:\n{said}");
    for s in says {
        assert!(said.contains(s), "{args:?} should say {s:?}:\n{said}");
    }
    assert!(
        !said.contains(SECRET),
        "{args:?} showed the secret:\n{said}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{args:?} took {:?} to refuse",
        started.elapsed()
    );
}

/// No broker needed: each property that would break exactly-once, a malformed one, an
/// unknown one and a contradiction are refused before anything starts, by name.
#[test]
fn properties_that_break_exactly_once_are_refused_by_name() {
    let tmp = scratch();
    let secret = format!("-Xsasl.password={SECRET}");
    refused(
        &["consume", &secret, "-X", "enable.auto.commit=true"],
        &["enable.auto.commit=true", "commits offsets itself"],
    );
    refused(
        &["verify", "-X", "isolation.level=read_uncommitted"],
        &["isolation.level=read_uncommitted", "read_committed only"],
    );
    refused(
        &["consume", "-X", "auto.offset.reset=earliest"],
        &["auto.offset.reset=earliest", "never a silent reset"],
    );
    refused(
        &["produce", &secret, "-X", "acks=1"],
        &["acks=1", "acks=all"],
    );
    refused(&["produce", "-X", "group.id=x"], &["group.id=x", "--group"]);
    refused(&["peek", "-X", "no-equals-sign"], &["expected key=value"]);
    refused(&["peek", "-X", "no.such.property=1"], &["no.such.property"]);
    // A secret in a bad value is not echoed by librdkafka's message either.
    refused(
        &[
            "peek",
            "-X",
            &format!("ssl.key.password={SECRET}"),
            "-X",
            "acks=maybe",
        ],
        &["acks"],
    );

    let file = tmp.path().join("client.properties");
    std::fs::write(
        &file,
        format!(
            "# a kcat -F file\nbootstrap.servers=127.0.0.1:1\nsasl.password={SECRET}\nnot a pair\n"
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    refused(
        &["peek", "--kafka-config-file", path],
        &["--kafka-config-file", "line 4 is not key=value"],
    );
    std::fs::write(&file, "bootstrap.servers=127.0.0.1:1\n").unwrap();
    // The file's brokers are the ones used: this one answers nobody, and the error names it.
    let out = landfall(&[
        "peek",
        "--kafka-config-file",
        path,
        "--connect-timeout-secs",
        "2",
    ])
    .env_remove("LANDFALL_BROKERS")
    .output()
    .unwrap();
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(
        said.contains("could not reach Kafka at 127.0.0.1:1"),
        "{said}"
    );
    refused(
        &[
            "peek",
            "--brokers",
            "127.0.0.1:2",
            "--kafka-config-file",
            path,
        ],
        &["--brokers", "contradicts bootstrap.servers=127.0.0.1:1"],
    );
}

/// Against the broker: the brokers and client settings come from a properties file and `-X`,
/// produce and consume work through them, verify (through the same file) is clean, and the
/// secret in the file appears in no log.
#[test]
fn a_properties_file_and_x_settings_reach_every_client() {
    let topic = unique_topic("rawprops");
    let d = dirs();
    let file = d.tmp.path().join("client.properties");
    std::fs::write(
        &file,
        format!(
            "# brokers from the file, not from --brokers\nbootstrap.servers={}\n\
             client.id=landfall-props-test\n# a secret the plaintext broker ignores\n\
             ssl.key.password={SECRET}\n",
            brokers()
        ),
    )
    .unwrap();
    let props = ["--kafka-config-file", file.to_str().unwrap()];

    let mut produce = produce_cmd(&topic, 3, 6_000, 7, 0);
    produce.env_remove("LANDFALL_BROKERS").args(props);
    produce.args(["-X", "linger.ms=5"]);
    let produced = run_ok(produce);

    let mut consume = consume_cmd(&topic, &format!("{topic}-g"), &d, true);
    consume.env_remove("LANDFALL_BROKERS").args(props);
    consume
        .args(["-X", "fetch.wait.max.ms=50"])
        .env("LANDFALL_LOG", "debug");
    let consumed = run_ok(consume);
    assert!(window_file_count(&d) > 0, "no window landed");

    let mut verify = landfall(&["verify", "--format", "json", "--topic", &topic]);
    verify.env_remove("LANDFALL_BROKERS").args(props);
    verify.args(["--group", &format!("{topic}-g"), "--output-dir"]);
    verify.arg(&d.report).arg("--rejects-dir").arg(&d.rejects);
    let verified = verify.output().unwrap();
    assert_eq!(
        verified.status.code(),
        Some(0),
        "verify:\n{}\n{}",
        String::from_utf8_lossy(&verified.stdout),
        stderr(&verified)
    );
    for (what, out) in [
        ("produce", &produced),
        ("consume", &consumed),
        ("verify", &verified),
    ] {
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out));
        assert!(!all.contains(SECRET), "{what} showed the secret");
    }
}
