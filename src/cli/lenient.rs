//! Parsing that reports every rejected value at once. clap stops at the first flag whose value
//! it cannot parse (`--clock fake`, `--rate fast`) and prints it alone, in its own format; the
//! range checks in `config` report every problem together. So a rejected value is recorded in
//! the same form as those (`--clock (LANDFALL_CLOCK) = fake: …`), the flag is set aside (its
//! default applies), and parsing goes on; `config` then adds what it finds in the rest.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::FromArgMatches;

use super::Cli;

/// The parsed command line and the values that were rejected, each as `--flag (ENV) = value:
/// why`. Errors other than a rejected value (an unknown flag, a missing one, `--help`) are
/// clap's own, returned as they are.
pub fn parse_from(mut argv: Vec<OsString>) -> Result<(Cli, Vec<String>), clap::Error> {
    let mut problems = Vec::new();
    // Flags whose environment variable is set aside. The command is made afresh for every
    // attempt: clap does not support changing a command it has already parsed with.
    let mut unset: Vec<(Vec<String>, String)> = Vec::new();
    loop {
        let mut cmd = super::command();
        for (path, name) in &unset {
            cmd = without_env(cmd, path, name).0;
        }
        let path = subcommand_path(&cmd, &argv);
        let e = match cmd.clone().try_get_matches_from(argv.clone()) {
            Ok(m) => return Cli::from_arg_matches(&m).map(|cli| (cli, problems)),
            Err(e) => e,
        };
        if !matches!(
            e.kind(),
            ErrorKind::InvalidValue | ErrorKind::ValueValidation
        ) {
            return Err(e);
        }
        let text = |kind| match e.get(kind) {
            Some(ContextValue::String(s)) => Some(s.clone()),
            Some(ContextValue::Strings(v)) => Some(v.join(", ")),
            _ => None,
        };
        let (Some(arg), Some(value)) = (
            text(ContextKind::InvalidArg),
            text(ContextKind::InvalidValue),
        ) else {
            return Err(e);
        };
        let long = arg.split_whitespace().next().unwrap_or(&arg).to_string();
        let Some(name) = long.strip_prefix("--") else {
            return Err(e);
        };
        let why = match (text(ContextKind::ValidValue), std::error::Error::source(&e)) {
            (Some(valid), _) => format!("expected one of {valid}"),
            (None, Some(source)) => source.to_string(),
            (None, None) => "not a valid value".into(),
        };
        let env = find_env(&cmd, &path, name);
        let before = argv.len();
        argv = without_flag(argv, &long, &value);
        // Not on the command line: the value came from the environment.
        let from_env =
            argv.len() == before && env.as_ref().is_some_and(|e| std::env::var_os(e).is_some());
        if argv.len() == before && !from_env {
            return Err(e);
        }
        if from_env {
            unset.push((path, name.to_string()));
        }
        let shown = if value.is_empty() {
            "\"\"".to_string()
        } else {
            value
        };
        problems.push(match env {
            Some(env) => format!("{long} ({env}) = {shown}: {why}"),
            None => format!("{long} = {shown}: {why}"),
        });
    }
}

/// The names of the subcommands `argv` selects, outermost first (`["bench", "consume"]`).
fn subcommand_path(cmd: &clap::Command, argv: &[OsString]) -> Vec<String> {
    let mut path = Vec::new();
    let mut cur = cmd;
    for a in argv.iter().skip(1).filter_map(|a| a.to_str()) {
        if let Some(sub) = cur.find_subcommand(a) {
            path.push(a.to_string());
            cur = sub;
        }
    }
    path
}

/// The subcommand at `path`.
fn at<'c>(cmd: &'c clap::Command, path: &[String]) -> &'c clap::Command {
    path.iter()
        .fold(cmd, |c, name| c.find_subcommand(name).unwrap_or(c))
}

/// The environment variable of the flag `--name` in the subcommand at `path` (or a global one).
fn find_env(cmd: &clap::Command, path: &[String], name: &str) -> Option<String> {
    let env_of = |c: &clap::Command| {
        c.get_arguments()
            .find(|a| a.get_long() == Some(name))
            .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
    };
    env_of(at(cmd, path)).or_else(|| env_of(cmd))
}

/// `cmd` with the environment variable of `--name` ignored in the subcommand at `path` and at
/// the top (global flags); and whether there was one.
fn without_env(cmd: clap::Command, path: &[String], name: &str) -> (clap::Command, bool) {
    fn reset(mut c: clap::Command, name: &str) -> (clap::Command, bool) {
        let ids: Vec<String> = c
            .get_arguments()
            .filter(|a| a.get_long() == Some(name) && a.get_env().is_some())
            .map(|a| a.get_id().to_string())
            .collect();
        let found = !ids.is_empty();
        for id in ids {
            c = c.mut_arg(id, |a| a.env(None));
        }
        (c, found)
    }
    fn nested(c: clap::Command, path: &[String], name: &str) -> (clap::Command, bool) {
        match path.split_first() {
            None => reset(c, name),
            Some((first, rest)) => {
                let mut found = false;
                let c = c.mut_subcommand(first, |s| {
                    let (s, f) = nested(s, rest, name);
                    found = f;
                    s
                });
                (c, found)
            }
        }
    }
    let (cmd, top) = reset(cmd, name);
    let (cmd, sub) = nested(cmd, path, name);
    (cmd, top || sub)
}

/// `argv` without `--long VALUE` and `--long=VALUE` where VALUE is the rejected one.
fn without_flag(argv: Vec<OsString>, long: &str, value: &str) -> Vec<OsString> {
    let joined = format!("{long}={value}");
    let mut out: Vec<OsString> = Vec::with_capacity(argv.len());
    let mut i = 0;
    while i < argv.len() {
        let a = argv[i].to_str();
        if a == Some(joined.as_str()) {
            i += 1;
            continue;
        }
        if a == Some(long) {
            let next = argv.get(i + 1).and_then(|n| n.to_str());
            if next == Some(value) {
                i += 2;
                continue;
            }
            if value.is_empty() && next.is_none_or(|n| n.starts_with("--")) {
                // A flag given without its value.
                i += 1;
                continue;
            }
        }
        out.push(argv[i].clone());
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<(Cli, Vec<String>), clap::Error> {
        parse_from(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn every_rejected_value_is_reported_in_the_config_form() {
        let (cli, problems) = parse(&[
            "landfall",
            "produce",
            "--clock",
            "fake",
            "--rate=fast",
            "--txn-size",
            "0",
            "--count",
            "5",
        ])
        .unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("--clock (LANDFALL_CLOCK) = fake: expected one of real, simulated"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("--rate (LANDFALL_RATE) = fast: "),
            "{problems:?}"
        );
        // The rest of the line still parsed, for `config` to check.
        match cli.command {
            super::super::Command::Produce(a) => {
                assert_eq!((a.count, a.txn_size), (Some(5), 0));
            }
            other => panic!("{other:?}"),
        }
        // A nested subcommand's flag names its own variable.
        let (_, problems) =
            parse(&["landfall", "bench", "consume", "--sim-events-per-sec", "x"]).unwrap();
        assert!(
            problems[0].starts_with("--sim-events-per-sec (LANDFALL_BENCH_SIM_EVENTS_PER_SEC) = x"),
            "{problems:?}"
        );
        // A flag without a variable.
        let (_, problems) = parse(&["landfall", "windows", "--format", "xml"]).unwrap();
        assert!(problems[0].starts_with("--format = xml: "), "{problems:?}");
    }

    #[test]
    fn other_errors_stay_clap_s() {
        let e = parse(&["landfall", "produce", "--no-such-flag"])
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        // A flag without its value is a rejected (empty) value.
        let (_, problems) = parse(&["landfall", "produce", "--clock"]).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("--clock (LANDFALL_CLOCK) = \"\": "),
            "{problems:?}"
        );
    }
}
