//! A small command-line parser: `--flag value`, `--flag=value`, `--switch`.

use std::collections::VecDeque;

/// Parsed flags, consumed by the subcommand that owns them.
#[derive(Debug)]
pub struct Args {
    flags: Vec<(String, Option<String>)>,
}

/// A usage error, printed with the subcommand's usage line.
#[derive(Debug)]
pub struct Usage(pub String);

impl Args {
    /// Parses everything after the subcommand name. `switches` take no
    /// value.
    pub fn parse(raw: impl IntoIterator<Item = String>, switches: &[&str]) -> Result<Args, Usage> {
        let mut raw: VecDeque<String> = raw.into_iter().collect();
        let mut flags = Vec::new();
        while let Some(arg) = raw.pop_front() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(Usage(format!("unexpected argument {arg:?}")));
            };
            if let Some((n, v)) = name.split_once('=') {
                flags.push((n.to_owned(), Some(v.to_owned())));
            } else if switches.contains(&name) {
                flags.push((name.to_owned(), None));
            } else {
                let v = raw
                    .pop_front()
                    .ok_or_else(|| Usage(format!("--{name} needs a value")))?;
                flags.push((name.to_owned(), Some(v)));
            }
        }
        Ok(Args { flags })
    }

    /// The last value of `--name`, if given.
    pub fn value(&mut self, name: &str) -> Option<String> {
        let mut last = None;
        self.flags.retain(|(n, v)| {
            if n == name {
                last = v.clone();
                false
            } else {
                true
            }
        });
        last
    }

    /// Every value of a repeatable `--name`.
    pub fn values(&mut self, name: &str) -> Vec<String> {
        let mut all = Vec::new();
        self.flags.retain(|(n, v)| {
            if n == name {
                all.extend(v.clone());
                false
            } else {
                true
            }
        });
        all
    }

    /// Whether the switch `--name` was given.
    pub fn switch(&mut self, name: &str) -> bool {
        let before = self.flags.len();
        self.flags.retain(|(n, _)| n != name);
        before != self.flags.len()
    }

    /// `--name` parsed as `T`, or `default`.
    pub fn parsed<T: std::str::FromStr>(&mut self, name: &str, default: T) -> Result<T, Usage> {
        match self.value(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| Usage(format!("--{name}: cannot parse {v:?}"))),
        }
    }

    /// Fails if any flag was not consumed.
    pub fn finish(self) -> Result<(), Usage> {
        match self.flags.first() {
            None => Ok(()),
            Some((n, _)) => Err(Usage(format!("unknown flag --{n}"))),
        }
    }
}
