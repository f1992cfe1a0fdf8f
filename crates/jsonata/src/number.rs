//! `$round` and `$formatNumber`: XPath `fn:format-number` pictures (XPath and XQuery
//! Functions 3.1, section 4.7) as JSONata implements them: prefix/suffix, mandatory `0` and
//! optional `#` digits, grouping (regular or not, in the integer and fraction parts),
//! percent `%` and per-mille `‰`, exponents (`00.000e0`), a separate negative sub-picture
//! after `;`, and the decimal-format properties of the optional third argument.

use crate::error::{ErrorCode, JsonataError, err};

type R<T> = Result<T, JsonataError>;

/// JSONata's `$round`: round half to even at `precision` decimal places, shifting by
/// decimal exponent (not by multiplying) so `$round(2.675, 2)` sees 267.5, not 267.4999….
pub(crate) fn round(n: f64, precision: i32) -> f64 {
    let shift =
        |x: f64, by: i32| -> f64 { format!("{x}e{by}").parse().unwrap_or(x * 10f64.powi(by)) };
    let arg = if precision != 0 {
        shift(n, precision)
    } else {
        n
    };
    // JavaScript Math.round: half up (towards +infinity).
    let mut result = (arg + 0.5).floor();
    if (result - arg).abs() == 0.5 && (result % 2.0).abs() == 1.0 {
        result -= 1.0;
    }
    if precision != 0 {
        result = shift(result, -precision);
    }
    if result == 0.0 { 0.0 } else { result }
}

struct Props {
    decimal: char,
    grouping: char,
    exponent: char,
    minus: String,
    percent: char,
    per_mille: char,
    zero: char,
    digit: char,
    pattern: char,
}

impl Props {
    fn family(&self) -> impl Fn(char) -> bool + '_ {
        move |c: char| (c as u32) >= self.zero as u32 && (c as u32) < self.zero as u32 + 10
    }
    fn active(&self, c: char) -> bool {
        self.family()(c)
            || [
                self.decimal,
                self.exponent,
                self.grouping,
                self.digit,
                self.pattern,
            ]
            .contains(&c)
    }
}

struct SubPicture {
    prefix: String,
    suffix: String,
    active: String,
    mantissa: String,
    exponent: Option<String>,
    integer: String,
    fraction: String,
    picture: String,
}

struct Analysed {
    integer_groups: Vec<usize>,
    regular: usize,
    min_int: usize,
    scaling: usize,
    prefix: String,
    fraction_groups: Vec<usize>,
    min_frac: usize,
    max_frac: usize,
    min_exp: usize,
    suffix: String,
    picture: String,
}

fn option_char(options: &[(String, String)], key: &str, default: char) -> char {
    options
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.chars().next())
        .unwrap_or(default)
}

fn split_parts(sub: &str, p: &Props) -> SubPicture {
    let chars: Vec<char> = sub.chars().collect();
    let is_active = |c: char| p.active(c) && c != p.exponent;
    let pstart = chars
        .iter()
        .position(|c| is_active(*c))
        .unwrap_or(chars.len());
    let pend = chars
        .iter()
        .rposition(|c| is_active(*c))
        .map_or(pstart, |i| i + 1)
        .max(pstart);
    let prefix: String = chars[..pstart].iter().collect();
    let suffix: String = chars[pend..].iter().collect();
    let active: String = chars[pstart..pend].iter().collect();
    let exp_pos = chars
        .iter()
        .enumerate()
        .skip(pstart)
        .find(|(_, c)| **c == p.exponent)
        .map(|(i, _)| i);
    let (mantissa, exponent) = match exp_pos {
        Some(e) if e <= pend => {
            // The reference slices the active part at the exponent's position in the whole
            // sub-picture; reproduce that.
            let act: Vec<char> = active.chars().collect();
            let cut = e.min(act.len());
            (
                act[..cut].iter().collect::<String>(),
                Some(act[(e + 1).min(act.len())..].iter().collect::<String>()),
            )
        }
        _ => (active.clone(), None),
    };
    let (integer, fraction) = match mantissa.find(p.decimal) {
        None => (mantissa.clone(), suffix.clone()),
        Some(i) => (
            mantissa[..i].to_owned(),
            mantissa[i + p.decimal.len_utf8()..].to_owned(),
        ),
    };
    SubPicture {
        prefix,
        suffix,
        active,
        mantissa,
        exponent,
        integer,
        fraction,
        picture: sub.to_owned(),
    }
}

fn validate(s: &SubPicture, p: &Props) -> R<()> {
    let fam = p.family();
    let count = |t: &str, c: char| t.matches(c).count();
    let mut error: Option<(ErrorCode, &str)> = None;
    let sp = &s.picture;
    if count(sp, p.decimal) > 1 {
        error = Some((
            ErrorCode::new("D3081"),
            "the picture has more than one decimal separator",
        ));
    }
    if count(sp, p.percent) > 1 {
        error = Some((
            ErrorCode::new("D3082"),
            "the picture has more than one percent character",
        ));
    }
    if count(sp, p.per_mille) > 1 {
        error = Some((
            ErrorCode::new("D3083"),
            "the picture has more than one per-mille character",
        ));
    }
    if sp.contains(p.percent) && sp.contains(p.per_mille) {
        error = Some((
            ErrorCode::new("D3084"),
            "the picture has both a percent and a per-mille character",
        ));
    }
    if !s.mantissa.chars().any(|c| fam(c) || c == p.digit) {
        error = Some((
            ErrorCode::new("D3085"),
            "the mantissa of the picture must contain at least one digit",
        ));
    }
    if s.active.chars().any(|c| !p.active(c)) {
        error = Some((
            ErrorCode::new("D3086"),
            "the picture has a passive character between active characters",
        ));
    }
    let chars: Vec<char> = sp.chars().collect();
    if let Some(dp) = chars.iter().position(|c| *c == p.decimal) {
        if (dp > 0 && chars[dp - 1] == p.grouping) || chars.get(dp + 1) == Some(&p.grouping) {
            error = Some((
                ErrorCode::new("D3087"),
                "a grouping separator cannot be next to the decimal separator",
            ));
        }
    } else if s.integer.ends_with(p.grouping) {
        error = Some((
            ErrorCode::new("D3088"),
            "the integer part cannot end with a grouping separator",
        ));
    }
    if sp.contains(&format!("{0}{0}", p.grouping)) {
        error = Some((
            ErrorCode::new("D3089"),
            "the picture has two adjacent grouping separators",
        ));
    }
    if let Some(i) = s.integer.find(p.digit)
        && s.integer[..i].chars().any(&fam)
    {
        error = Some((
            ErrorCode::new("D3090"),
            "the integer part has an optional digit after a mandatory one",
        ));
    }
    if let Some(i) = s.fraction.rfind(p.digit)
        && s.fraction[i..].chars().any(&fam)
    {
        error = Some((
            ErrorCode::new("D3091"),
            "the fractional part has a mandatory digit after an optional one",
        ));
    }
    if let Some(e) = &s.exponent {
        if !e.is_empty() && (sp.contains(p.percent) || sp.contains(p.per_mille)) {
            error = Some((
                ErrorCode::new("D3092"),
                "a picture with an exponent cannot have a percent or per-mille character",
            ));
        }
        if e.is_empty() || e.chars().any(|c| !fam(c)) {
            error = Some((
                ErrorCode::new("D3093"),
                "the exponent must contain only mandatory digits",
            ));
        }
    }
    match error {
        Some((code, text)) => Err(JsonataError::coded(
            code,
            format!("Invalid picture string '{sp}' for $formatNumber: {text}"),
        )),
        None => Ok(()),
    }
}

fn analyse(s: &SubPicture, p: &Props) -> Analysed {
    let fam = p.family();
    let digits = |t: &str| t.chars().filter(|c| fam(*c) || *c == p.digit).count();
    let positions = |part: &str, to_left: bool| -> Vec<usize> {
        let mut out = Vec::new();
        for (i, c) in part.char_indices() {
            if c == p.grouping {
                out.push(if to_left {
                    digits(&part[..i])
                } else {
                    digits(&part[i..])
                });
            }
        }
        out
    };
    let integer_groups = positions(&s.integer, false);
    let regular = {
        let idx = &integer_groups;
        if idx.is_empty() {
            0
        } else {
            fn gcd(a: usize, b: usize) -> usize {
                if b == 0 { a } else { gcd(b, a % b) }
            }
            let f = idx.iter().copied().reduce(gcd).unwrap_or(0);
            if f > 0 && (1..=idx.len()).all(|k| idx.contains(&(k * f))) {
                f
            } else {
                0
            }
        }
    };
    let fraction_groups = positions(&s.fraction, true);
    let mut min_int = s.integer.chars().filter(|c| fam(*c)).count();
    let scaling = min_int;
    let mut min_frac = s.fraction.chars().filter(|c| fam(*c)).count();
    let mut max_frac = digits(&s.fraction);
    let exp = s.exponent.is_some();
    if min_int == 0 && max_frac == 0 {
        if exp {
            min_frac = 1;
            max_frac = 1;
        } else {
            min_int = 1;
        }
    }
    if exp && min_int == 0 && s.integer.contains(p.digit) {
        min_int = 1;
    }
    if min_int == 0 && min_frac == 0 {
        min_frac = 1;
    }
    let min_exp = s
        .exponent
        .as_ref()
        .map_or(0, |e| e.chars().filter(|c| fam(*c)).count());
    Analysed {
        integer_groups,
        regular,
        min_int,
        scaling,
        prefix: s.prefix.clone(),
        fraction_groups,
        min_frac,
        max_frac,
        min_exp,
        suffix: s.suffix.clone(),
        picture: s.picture.clone(),
    }
}

/// `$formatNumber(value, picture, options?)`; `options` are decimal-format properties
/// (`decimal-separator`, `grouping-separator`, `exponent-separator`, `minus-sign`,
/// `percent`, `per-mille`, `zero-digit`, `digit`, `pattern-separator`).
pub(crate) fn format_number(value: f64, picture: &str, options: &[(String, String)]) -> R<String> {
    let p = Props {
        decimal: option_char(options, "decimal-separator", '.'),
        grouping: option_char(options, "grouping-separator", ','),
        exponent: option_char(options, "exponent-separator", 'e'),
        minus: options
            .iter()
            .find(|(k, _)| k == "minus-sign")
            .map_or("-".to_owned(), |(_, v)| v.clone()),
        percent: option_char(options, "percent", '%'),
        per_mille: option_char(options, "per-mille", '\u{2030}'),
        zero: option_char(options, "zero-digit", '0'),
        digit: option_char(options, "digit", '#'),
        pattern: option_char(options, "pattern-separator", ';'),
    };
    super::datetime::check_picture(picture)?;
    if !value.is_finite() {
        return Err(err!(D3001, "Attempting to format Infinity or NaN"));
    }
    let subs: Vec<&str> = picture.split(p.pattern).collect();
    if subs.len() > 2 {
        return Err(err!(
            D3080,
            "The picture string '{picture}' for $formatNumber has more than two sub-pictures"
        ));
    }
    let parts: Vec<SubPicture> = subs.iter().map(|s| split_parts(s, &p)).collect();
    for s in &parts {
        validate(s, &p)?;
    }
    let mut vars: Vec<Analysed> = parts.iter().map(|s| analyse(s, &p)).collect();
    if vars.len() == 1 {
        let mut neg = analyse(&parts[0], &p);
        neg.prefix = format!("{}{}", p.minus, neg.prefix);
        vars.push(neg);
    }
    let pic = if value >= 0.0 { &vars[0] } else { &vars[1] };
    let adjusted = if pic.picture.contains(p.percent) {
        value * 100.0
    } else if pic.picture.contains(p.per_mille) {
        value * 1000.0
    } else {
        value
    };
    let mut mantissa = adjusted.abs();
    let mut exponent: Option<i64> = None;
    if pic.min_exp != 0 {
        let max_m = 10f64.powi(pic.scaling as i32);
        let min_m = 10f64.powi(pic.scaling as i32 - 1);
        let mut e = 0i64;
        // Bounded: a finite non-zero double is within 10^±330 of 1.
        if mantissa != 0.0 {
            while mantissa < min_m && e > -400 {
                mantissa *= 10.0;
                e -= 1;
            }
            while mantissa > max_m && e < 400 {
                mantissa /= 10.0;
                e += 1;
            }
        }
        exponent = Some(e);
    }
    let rounded = round(mantissa, pic.max_frac.min(100) as i32);
    let to_family = |s: String| -> String {
        if p.zero == '0' {
            return s;
        }
        s.chars()
            .map(|c| match c.to_digit(10) {
                Some(d) => char::from_u32(p.zero as u32 + d).unwrap_or(c),
                None => c,
            })
            .collect()
    };
    let fixed = format!("{:.*}", pic.max_frac.min(100), rounded.abs());
    let mut sv: Vec<char> = to_family(fixed).chars().collect();
    match sv.iter().position(|c| *c == '.') {
        None => sv.push(p.decimal),
        Some(i) => sv[i] = p.decimal,
    }
    while sv.first() == Some(&p.zero) {
        sv.remove(0);
    }
    while sv.last() == Some(&p.zero) {
        sv.pop();
    }
    let dpos = |sv: &Vec<char>| sv.iter().position(|c| *c == p.decimal).unwrap_or(sv.len());
    let d = dpos(&sv);
    let pad_left = pic.min_int.saturating_sub(d);
    let pad_right = pic.min_frac.saturating_sub(sv.len() - d - 1);
    sv.splice(0..0, std::iter::repeat_n(p.zero, pad_left));
    sv.extend(std::iter::repeat_n(p.zero, pad_right));
    let mut d = dpos(&sv);
    if let Some(groups) = d.saturating_sub(1).checked_div(pic.regular) {
        for g in 1..=groups {
            sv.insert(d - g * pic.regular, p.grouping);
        }
    } else {
        for pos in &pic.integer_groups {
            if *pos <= d {
                sv.insert(d - pos, p.grouping);
                d += 1;
            }
        }
    }
    let d = dpos(&sv);
    for pos in &pic.fraction_groups {
        let at = (pos + d + 1).min(sv.len());
        sv.insert(at, p.grouping);
    }
    let d = dpos(&sv);
    if !pic.picture.contains(p.decimal) || d + 1 == sv.len() {
        sv.pop();
    }
    let mut out: String = sv.into_iter().collect();
    if let Some(e) = exponent {
        let mut es = to_family(e.unsigned_abs().to_string());
        while es.chars().count() < pic.min_exp {
            es.insert(0, p.zero);
        }
        out.push(p.exponent);
        if e < 0 {
            out.push_str(&p.minus);
        }
        out.push_str(&es);
    }
    Ok(format!("{}{out}{}", pic.prefix, pic.suffix))
}
