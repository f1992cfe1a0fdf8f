//! Windows computer names and the naming policy that generates them.
//!
//! The rules come from Microsoft's "Naming conventions in Active Directory for computers,
//! domains, sites, and OUs": a NetBIOS computer name is at most 15 characters; fleetprep also
//! keeps to the DNS-safe subset (letters, digits, hyphen), never all digits, no leading or
//! trailing hyphen, not a reserved word (`SYSTEM`, `NETWORK`, ...). Names compare
//! case-insensitively, so uniqueness is on [`Hostname::key`].
//!
//! A [`HostnamePolicy`] is a checked pattern such as `{prefix}-{zone}{seq:4}`. Everything that
//! can make a name invalid is decided when the policy is built: the only parts that vary per
//! instance are the sequence (digits), the instance-id hash (lowercase hex) and the zone (one
//! letter), so checking the pattern's fixed parts and widths proves every candidate is valid.
//! (One corner is left to [`HostnamePolicy::candidate`]'s final check: a hash-only pattern
//! whose hex digits happen to complete a reserved word, e.g. prefix `SERVIC` + `e`.)

use std::fmt;

use serde::{Deserialize, Serialize};

/// NetBIOS limit on a computer name (the 16th byte is the NetBIOS suffix).
pub const MAX_LEN: usize = 15;

/// Why a string is not a valid Windows computer name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostnameError {
    /// The name is empty.
    #[error("a computer name cannot be empty")]
    Empty,
    /// Over 15 characters.
    #[error("{len} characters is too long: a Windows computer name has at most 15")]
    TooLong {
        /// The name's length.
        len: usize,
    },
    /// A character outside letters, digits and hyphen.
    #[error(
        "character {ch:?} at position {position} is not allowed: use letters, digits and hyphens"
    )]
    InvalidChar {
        /// The character.
        ch: char,
        /// 1-based position.
        position: usize,
    },
    /// Only digits.
    #[error("a computer name cannot be all digits")]
    AllDigits,
    /// Starts with `-`.
    #[error("a computer name cannot start with a hyphen")]
    LeadingHyphen,
    /// Ends with `-`.
    #[error("a computer name cannot end with a hyphen")]
    TrailingHyphen,
    /// A word Windows or DNS reserves.
    #[error("{name:?} is a reserved word and cannot be a computer name")]
    Reserved {
        /// The reserved word, as given.
        name: String,
    },
}

/// Single-word names reserved by Windows ("Naming conventions in Active Directory for
/// computers, domains, sites, and OUs", table of reserved words) and by RFC 952 (DNS).
const RESERVED: &[&str] = &[
    "ANONYMOUS",
    "BATCH",
    "BUILTIN",
    "DIALUP",
    "GATEWAY",
    "GW",
    "INTERACTIVE",
    "INTERNET",
    "LOCAL",
    "NETWORK",
    "NULL",
    "PROXY",
    "RESTRICTED",
    "SELF",
    "SERVER",
    "SERVICE",
    "SYSTEM",
    "TAC",
    "USERS",
    "WORLD",
];

/// Checks `name` against the Windows computer-name rules, reporting the first rule it breaks.
pub fn validate(name: &str) -> Result<(), HostnameError> {
    if name.is_empty() {
        return Err(HostnameError::Empty);
    }
    if let Some((position, ch)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(HostnameError::InvalidChar {
            ch,
            position: position + 1,
        });
    }
    // Only ASCII is left, so bytes are characters.
    if name.len() > MAX_LEN {
        return Err(HostnameError::TooLong { len: name.len() });
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostnameError::AllDigits);
    }
    if name.starts_with('-') {
        return Err(HostnameError::LeadingHyphen);
    }
    if name.ends_with('-') {
        return Err(HostnameError::TrailingHyphen);
    }
    if RESERVED.iter().any(|word| word.eq_ignore_ascii_case(name)) {
        return Err(HostnameError::Reserved {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// A valid Windows computer name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hostname(
    // Invariant: passes `validate`.
    String,
);

impl Hostname {
    /// Checks and wraps a name.
    pub fn parse(name: &str) -> Result<Self, HostnameError> {
        validate(name)?;
        Ok(Self(name.to_owned()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The uniqueness key: Windows compares computer names case-insensitively.
    pub fn key(&self) -> String {
        key(&self.0)
    }
}

/// The case-folded uniqueness key for any name (valid or not); used by name stores.
pub fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The host part of the computer name SSM reports. The SSM agent reports a fully qualified
/// name: Win32_ComputerSystem `DNSHostName` + "." + `Domain`, where `Domain` is the workgroup
/// off a domain (amazon-ssm-agent source, platform code for Windows,
/// `fullyQualifiedDomainName`): `APP-0042.WORKGROUP`, `APP-0042.corp.example.com`. Falls back
/// to the whole value when it has no dot (the agent's `os.Hostname()` fallback).
pub fn ssm_host_part(computer_name: &str) -> &str {
    computer_name
        .split_once('.')
        .map_or(computer_name, |(host, _)| host)
}

/// Whether the computer name SSM reports is `expected`: the host part compared the way
/// Windows compares names (ignoring case).
pub fn ssm_name_matches(ssm_computer_name: &str, expected: &str) -> bool {
    key(ssm_host_part(ssm_computer_name)) == key(ssm_host_part(expected))
}

impl TryFrom<String> for Hostname {
    type Error = HostnameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        validate(&value)?;
        Ok(Self(value))
    }
}

impl From<Hostname> for String {
    fn from(value: Hostname) -> Self {
        value.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `[hostname]` section of a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostnameConfig {
    /// Tokens: `{prefix}`, `{group}`, `{zone}` (the availability zone's letter),
    /// `{seq:N}` (sequence zero-padded to N digits), `{hash:N}` (first N hex digits of a hash
    /// of the instance id). Everything else is literal.
    pub pattern: String,
    /// Value of `{prefix}`.
    #[serde(default)]
    pub prefix: String,
    /// Value of `{group}` (e.g. a short Auto Scaling group code).
    #[serde(default)]
    pub group: String,
    /// The first sequence number handed out (default 1, so names start at `...001`).
    #[serde(default = "default_sequence_start")]
    pub sequence_start: u64,
}

fn default_sequence_start() -> u64 {
    1
}

/// Why a naming pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The pattern can produce invalid names or does not parse.
    #[error("pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// A token value (prefix, group, sequence_start) is unusable.
    #[error("hostname.{key} {value:?}: {reason}")]
    InvalidValue {
        /// The config key.
        key: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// The per-instance inputs cannot produce a name.
    #[error("instance {instance_id:?}: {reason}")]
    InvalidContext {
        /// The instance.
        instance_id: String,
        /// Why.
        reason: String,
    },
    /// A sequence outside the pattern's range.
    #[error("sequence {sequence} is outside the pattern's range {first}..={last}")]
    SequenceOutOfRange {
        /// The sequence asked for.
        sequence: u64,
        /// The first valid sequence.
        first: u64,
        /// The last valid sequence.
        last: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Zone,
    Seq { width: usize },
    Hash { width: usize },
}

/// How a pool walks through a policy's candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateSpace {
    /// The pattern has `{seq:N}`: candidate `n` for `n` in `first..=last`; distinct sequences
    /// give distinct names, so a pool only has to keep sequences unique.
    Sequence {
        /// The first sequence (`sequence_start`).
        first: u64,
        /// The last sequence (`10^N - 1`).
        last: u64,
    },
    /// The pattern has only `{hash:N}`: attempt 0 hashes the instance id, attempt `k` rehashes
    /// it with `k`; names can collide, so a pool must check each candidate's key.
    Hash {
        /// How many attempts before the pool is exhausted.
        attempts: u64,
    },
}

/// How many rehashes a pool tries before calling a hash-only pattern exhausted.
pub const HASH_ATTEMPTS: u64 = 64;

/// Per-instance inputs to a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameContext<'a> {
    /// The instance the name is for (hashed by `{hash:N}`).
    pub instance_id: &'a str,
    /// The availability zone, e.g. `us-east-1a`; required when the pattern has `{zone}`.
    pub availability_zone: Option<&'a str>,
}

/// A checked naming pattern: every name it can produce is a valid computer name.
/// Deserializes from a [`HostnameConfig`] table, running the checks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "HostnameConfig")]
pub struct HostnamePolicy {
    pattern: String,
    // Invariant: adjacent literals merged, no empty literal, at least one Seq or Hash, at
    // most one Seq, total width <= MAX_LEN, and the edges cannot be hyphens.
    segments: Vec<Segment>,
    space: CandidateSpace,
}

impl HostnamePolicy {
    /// Builds a policy from its config, rejecting patterns that could produce invalid names.
    pub fn new(config: &HostnameConfig) -> Result<Self, PolicyError> {
        let pattern = config.pattern.as_str();
        let bad = |reason: String| PolicyError::InvalidPattern {
            pattern: pattern.to_owned(),
            reason,
        };
        for (key, value) in [("prefix", &config.prefix), ("group", &config.group)] {
            if let Some(ch) = value
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
            {
                return Err(PolicyError::InvalidValue {
                    key,
                    value: value.clone(),
                    reason: format!(
                        "character {ch:?} is not allowed in a computer name: use letters, digits and hyphens"
                    ),
                });
            }
        }
        let mut segments: Vec<Segment> = Vec::new();
        let push_literal = |segments: &mut Vec<Segment>, text: &str| {
            if text.is_empty() {
                return;
            }
            if let Some(Segment::Literal(last)) = segments.last_mut() {
                last.push_str(text);
            } else {
                segments.push(Segment::Literal(text.to_owned()));
            }
        };
        let mut rest = pattern;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let Some(end) = after.find('}') else {
                    return Err(bad("a '{' is never closed: tokens look like {seq:3}".into()));
                };
                let token = &after[..end];
                rest = &after[end + 1..];
                let (name, width) = match token.split_once(':') {
                    Some((name, width)) => (name, Some(width)),
                    None => (token, None),
                };
                let parse_width = |max: usize| -> Result<usize, PolicyError> {
                    let Some(width) = width else {
                        return Err(bad(format!("{{{name}}} needs a width, e.g. {{{name}:3}}")));
                    };
                    match width.parse::<usize>() {
                        Ok(w) if (1..=max).contains(&w) => Ok(w),
                        _ => Err(bad(format!(
                            "{{{token}}}: the width must be a number from 1 to {max}"
                        ))),
                    }
                };
                let no_width = |value: Option<&str>| -> Result<(), PolicyError> {
                    match value {
                        Some(_) => Err(bad(format!("{{{name}}} takes no width"))),
                        None => Ok(()),
                    }
                };
                match name {
                    "prefix" => {
                        no_width(width)?;
                        push_literal(&mut segments, &config.prefix);
                    }
                    "group" => {
                        no_width(width)?;
                        push_literal(&mut segments, &config.group);
                    }
                    "zone" => {
                        no_width(width)?;
                        segments.push(Segment::Zone);
                    }
                    "seq" => {
                        let width = parse_width(9)?;
                        if segments.iter().any(|s| matches!(s, Segment::Seq { .. })) {
                            return Err(bad("{seq} may appear only once".into()));
                        }
                        segments.push(Segment::Seq { width });
                    }
                    "hash" => {
                        let width = parse_width(8)?;
                        segments.push(Segment::Hash { width });
                    }
                    other => {
                        return Err(bad(format!(
                            "unknown token {{{other}}}: use {{prefix}}, {{group}}, {{zone}}, {{seq:N}} or {{hash:N}}"
                        )));
                    }
                }
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let literal = &rest[..end];
                if literal.contains('}') {
                    return Err(bad("a '}' has no matching '{'".into()));
                }
                if let Some(ch) = literal
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
                {
                    return Err(bad(format!(
                        "character {ch:?} is not allowed in a computer name: use letters, digits and hyphens"
                    )));
                }
                push_literal(&mut segments, literal);
                rest = &rest[end..];
            }
        }

        let seq = segments.iter().find_map(|s| match s {
            Segment::Seq { width } => Some(*width),
            _ => None,
        });
        let has_hash = segments.iter().any(|s| matches!(s, Segment::Hash { .. }));
        if seq.is_none() && !has_hash {
            return Err(bad(
                "it has neither {seq:N} nor {hash:N}, so every instance would get the same name"
                    .into(),
            ));
        }
        let width: usize = segments.iter().map(segment_width).sum();
        if width > MAX_LEN {
            return Err(bad(format!(
                "it produces {width}-character names; a Windows computer name has at most {MAX_LEN} (shorten the prefix/group or the widths)"
            )));
        }
        let has_letter = segments.iter().any(|s| match s {
            Segment::Literal(text) => text.bytes().any(|b| b.is_ascii_alphabetic()),
            Segment::Zone => true,
            _ => false,
        });
        if !has_letter {
            return Err(bad(
                "it can produce an all-digit name, which Windows rejects: add a letter to the prefix or a literal"
                    .into(),
            ));
        }
        if let Some(Segment::Literal(text)) = segments.first()
            && text.starts_with('-')
        {
            return Err(bad("its names would start with a hyphen".into()));
        }
        if let Some(Segment::Literal(text)) = segments.last()
            && text.ends_with('-')
        {
            return Err(bad("its names would end with a hyphen".into()));
        }
        let space = match seq {
            Some(width) => {
                let last = 10u64.pow(width as u32) - 1;
                if config.sequence_start > last {
                    return Err(PolicyError::InvalidValue {
                        key: "sequence_start",
                        value: config.sequence_start.to_string(),
                        reason: format!("{{seq:{width}}} only counts up to {last}"),
                    });
                }
                CandidateSpace::Sequence {
                    first: config.sequence_start,
                    last,
                }
            }
            None => CandidateSpace::Hash {
                attempts: HASH_ATTEMPTS,
            },
        };
        Ok(Self {
            pattern: pattern.to_owned(),
            segments,
            space,
        })
    }

    /// Shorthand for a policy from a bare pattern with the given prefix.
    pub fn from_pattern(pattern: &str, prefix: &str) -> Result<Self, PolicyError> {
        Self::new(&HostnameConfig {
            pattern: pattern.to_owned(),
            prefix: prefix.to_owned(),
            group: String::new(),
            sequence_start: default_sequence_start(),
        })
    }

    /// The pattern as configured.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Which candidates a pool should try, and in what order.
    pub fn candidate_space(&self) -> CandidateSpace {
        self.space
    }

    /// How many distinct names the policy can hand out at once (for hash-only patterns, the
    /// number of attempts a pool makes per instance bounds what it will find in practice).
    pub fn capacity(&self) -> u64 {
        match self.space {
            CandidateSpace::Sequence { first, last } => last - first + 1,
            CandidateSpace::Hash { .. } => self
                .segments
                .iter()
                .map(|s| match s {
                    Segment::Hash { width } => 16u64.saturating_pow(*width as u32),
                    _ => 1,
                })
                .fold(1u64, |a, b| a.saturating_mul(b)),
        }
    }

    /// Whether names depend on the availability zone (then [`NameContext::availability_zone`]
    /// is required).
    pub fn uses_zone(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Zone))
    }

    /// Checks that `context` can produce names at all (an instance id, and a zone when the
    /// pattern has `{zone}`), so a pool can refuse a bad request before it touches its store.
    pub fn check_context(&self, context: &NameContext<'_>) -> Result<(), PolicyError> {
        let probe = match self.space {
            CandidateSpace::Sequence { first, .. } => first,
            CandidateSpace::Hash { .. } => 0,
        };
        self.candidate(probe, context).map(drop)
    }

    /// The candidate name number `n` (a sequence number or a hash attempt, see
    /// [`CandidateSpace`]) for an instance.
    pub fn candidate(&self, n: u64, context: &NameContext<'_>) -> Result<Hostname, PolicyError> {
        if let CandidateSpace::Sequence { first, last } = self.space
            && !(first..=last).contains(&n)
        {
            return Err(PolicyError::SequenceOutOfRange {
                sequence: n,
                first,
                last,
            });
        }
        if context.instance_id.is_empty() {
            return Err(PolicyError::InvalidContext {
                instance_id: String::new(),
                reason: "the instance id is empty".into(),
            });
        }
        let mut name = String::with_capacity(MAX_LEN);
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => name.push_str(text),
                Segment::Zone => name.push(zone_letter(context)?),
                Segment::Seq { width } => name.push_str(&format!("{n:0width$}")),
                Segment::Hash { width } => {
                    let hash = match self.space {
                        CandidateSpace::Hash { .. } if n > 0 => {
                            short_hash(format!("{}#{n}", context.instance_id).as_bytes())
                        }
                        _ => short_hash(context.instance_id.as_bytes()),
                    };
                    name.push_str(&format!("{hash:016x}")[..*width]);
                }
            }
        }
        // The constructor proved this cannot fail; keep the check so a bug surfaces as an
        // error instead of an invalid name reaching Windows.
        Hostname::parse(&name).map_err(|error| PolicyError::InvalidPattern {
            pattern: self.pattern.clone(),
            reason: format!("produced invalid name {name:?}: {error}"),
        })
    }
}

impl TryFrom<HostnameConfig> for HostnamePolicy {
    type Error = PolicyError;
    fn try_from(config: HostnameConfig) -> Result<Self, Self::Error> {
        Self::new(&config)
    }
}

fn segment_width(segment: &Segment) -> usize {
    match segment {
        Segment::Literal(text) => text.len(),
        Segment::Zone => 1,
        Segment::Seq { width } | Segment::Hash { width } => *width,
    }
}

/// `us-east-1a` → `a`; Local Zones (`us-west-2-lax-1a`) end in a letter too.
fn zone_letter(context: &NameContext<'_>) -> Result<char, PolicyError> {
    let invalid = |reason: &str| PolicyError::InvalidContext {
        instance_id: context.instance_id.to_owned(),
        reason: reason.to_owned(),
    };
    let zone = context
        .availability_zone
        .ok_or_else(|| invalid("the pattern has {zone} but no availability zone was given"))?;
    match zone.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => Ok(c.to_ascii_lowercase()),
        _ => Err(invalid(&format!(
            "availability zone {zone:?} does not end in a zone letter (expected e.g. us-east-1a)"
        ))),
    }
}

/// The hash behind `{hash:N}`: FNV-1a (64-bit), then MurmurHash3's 64-bit finalizer. Stable
/// across releases and platforms, unlike `std`'s `DefaultHasher`.
///
/// Why the finalizer: `{hash:N}` keeps the *leading* hex digits, and plain FNV-1a barely
/// moves them when only the last characters differ (ids ending in a counter, and the `#k`
/// rehash suffix): 10,000 such ids gave 804 distinct `{hash:4}` names instead of ~9,270.
pub fn short_hash(bytes: &[u8]) -> u64 {
    use std::hash::Hasher as _;
    let mut fnv = fnv::FnvHasher::default();
    fnv.write(bytes);
    let mut hash = fnv.finish();
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10, bug 3: SSM reports `DNSHostName.Domain` (amazon-ssm-agent, platform code for
    /// Windows), so the sysprep naming mode must compare the host part or it always times out.
    #[test]
    fn ssm_computer_name_is_compared_by_host_part() {
        assert!(ssm_name_matches("APP-0042.WORKGROUP", "APP-0042"));
        assert!(ssm_name_matches("app-0042.corp.example.com", "APP-0042"));
        assert!(ssm_name_matches("APP-0042", "app-0042"));
        assert!(!ssm_name_matches("APP-0043.WORKGROUP", "APP-0042"));
        assert!(!ssm_name_matches("APP-00421.corp.example.com", "APP-0042"));
        assert_eq!(
            ssm_host_part("EC2AMAZ-A1B2C3D.WORKGROUP"),
            "EC2AMAZ-A1B2C3D"
        );
    }

    fn check(name: &str, expected: Result<(), HostnameError>) {
        assert_eq!(validate(name), expected, "name {name:?}");
    }

    #[test]
    fn windows_name_rules() {
        check("WEB-001", Ok(()));
        check("a", Ok(()));
        check("abcdefghijklmno", Ok(()));
        check("", Err(HostnameError::Empty));
        check("abcdefghijklmnop", Err(HostnameError::TooLong { len: 16 }));
        check("12345", Err(HostnameError::AllDigits));
        check("-web", Err(HostnameError::LeadingHyphen));
        check("web-", Err(HostnameError::TrailingHyphen));
        check(
            "System",
            Err(HostnameError::Reserved {
                name: "System".into(),
            }),
        );
        check("system1", Ok(()));
        check(
            "web_01",
            Err(HostnameError::InvalidChar {
                ch: '_',
                position: 4,
            }),
        );
        check(
            "wéb",
            Err(HostnameError::InvalidChar {
                ch: 'é',
                position: 2,
            }),
        );
        check(
            "web 1",
            Err(HostnameError::InvalidChar {
                ch: ' ',
                position: 4,
            }),
        );
    }

    fn policy(pattern: &str, prefix: &str) -> Result<HostnamePolicy, PolicyError> {
        HostnamePolicy::from_pattern(pattern, prefix)
    }

    fn reason(pattern: &str, prefix: &str) -> String {
        match policy(pattern, prefix) {
            Ok(_) => panic!("pattern {pattern:?} should be rejected"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn rejects_patterns_that_can_produce_invalid_names() {
        assert!(reason("{prefix}-{seq:8}", "webfarm").contains("16-character"));
        assert!(reason("{seq:4}", "").contains("all-digit"));
        assert!(reason("{prefix}{hash:6}", "123").contains("all-digit"));
        assert!(reason("-{prefix}{seq:3}", "web").contains("start with a hyphen"));
        assert!(reason("{prefix}{seq:3}", "-web").contains("start with a hyphen"));
        assert!(reason("{prefix}{seq:3}-", "web").contains("end with a hyphen"));
        assert!(reason("{prefix}", "web").contains("same name"));
        assert!(reason("{prefix}_{seq:3}", "web").contains("'_'"));
        assert!(reason("{prefix}{seq}", "web").contains("needs a width"));
        assert!(reason("{prefix}{seq:0}", "web").contains("width"));
        assert!(reason("{prefix}{nope}", "web").contains("unknown token"));
        assert!(reason("{prefix{seq:3}", "web").contains("unknown token"));
        assert!(reason("{prefix}{seq:3", "web").contains("never closed"));
        assert!(reason("web}{seq:3}", "").contains("no matching"));
        assert!(reason("{prefix}{seq:2}{seq:2}", "web").contains("only once"));
        assert!(reason("{prefix}{seq:3}", "we b").contains("hostname.prefix"));
    }

    #[test]
    fn candidates_follow_the_pattern() {
        let p = policy("{prefix}-{zone}{seq:3}", "WEB").unwrap();
        let ctx = NameContext {
            instance_id: "i-0123456789abcdef0",
            availability_zone: Some("us-east-1b"),
        };
        assert_eq!(p.candidate(7, &ctx).unwrap().as_str(), "WEB-b007");
        assert_eq!(p.capacity(), 999);
        assert!(matches!(
            p.candidate(0, &ctx),
            Err(PolicyError::SequenceOutOfRange { .. })
        ));
        let no_zone = NameContext {
            availability_zone: None,
            ..ctx
        };
        assert!(p.candidate(1, &no_zone).is_err());

        let h = policy("{prefix}{hash:6}", "ws").unwrap();
        let a = h.candidate(0, &ctx).unwrap();
        assert_eq!(a.as_str().len(), 8);
        assert_eq!(a, h.candidate(0, &ctx).unwrap(), "hash is deterministic");
        assert_ne!(a, h.candidate(1, &ctx).unwrap(), "attempts rehash");
        assert_eq!(
            h.candidate_space(),
            CandidateSpace::Hash {
                attempts: HASH_ATTEMPTS
            }
        );
    }

    /// Instance ids that differ only at the end (a counter) still spread over the leading
    /// hex digits that `{hash:N}` keeps: close to the ideal ~9,270 distinct values for 10,000
    /// ids in 65,536 names, for first attempts and for rehashes alike.
    #[test]
    fn hash_spreads_ids_that_differ_only_at_the_end() {
        let policy = policy("{prefix}{hash:4}", "h").unwrap();
        for attempt in [0, 1, 7] {
            let names: std::collections::HashSet<String> = (1..=10_000u64)
                .map(|i| {
                    let instance_id = format!("i-{i:017x}");
                    let context = NameContext {
                        instance_id: &instance_id,
                        availability_zone: None,
                    };
                    policy.candidate(attempt, &context).unwrap().key()
                })
                .collect();
            assert!(
                names.len() > 9_000,
                "attempt {attempt}: {} names",
                names.len()
            );
        }
    }

    #[test]
    fn hostname_key_is_case_insensitive() {
        assert_eq!(
            Hostname::parse("Web-01").unwrap().key(),
            Hostname::parse("WEB-01").unwrap().key()
        );
    }

    proptest::proptest! {
        #[test]
        fn every_candidate_of_an_accepted_policy_is_valid(
            prefix in "[A-Za-z0-9-]{0,8}",
            sep in "[-a-z]{0,2}",
            width in 1usize..6,
            hash in 0usize..4,
            n in 0u64..1_000_000,
            iid in "i-[0-9a-f]{17}",
        ) {
            let pattern = if hash > 0 {
                format!("{{prefix}}{sep}{{seq:{width}}}{{hash:{hash}}}")
            } else {
                format!("{{prefix}}{sep}{{zone}}{{seq:{width}}}")
            };
            if let Ok(p) = policy(&pattern, &prefix) {
                let CandidateSpace::Sequence { first, last } = p.candidate_space() else {
                    panic!("sequence pattern");
                };
                let n = first + n % (last - first + 1);
                let ctx = NameContext { instance_id: &iid, availability_zone: Some("eu-west-1c") };
                let name = p.candidate(n, &ctx).unwrap();
                proptest::prop_assert!(validate(name.as_str()).is_ok());
            }
        }
    }
}
