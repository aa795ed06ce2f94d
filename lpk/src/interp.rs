//! Compose-style `${VAR}` interpolation of the manifest at deploy time: `$VAR`, `${VAR}`,
//! `${VAR:-default}` (unset or empty), `${VAR-default}` (unset), `${VAR:?message}` /
//! `${VAR?message}` (required) and `$$` for a literal `$`. Unknown variables become empty.

use serde_yaml_ng::Value;
use std::collections::BTreeMap;

/// Interpolates one string.
pub fn interpolate(s: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = closing(r).ok_or_else(|| format!("`${{{r}` is not closed with `}}`"))?;
            out.push_str(&braced(&r[..end], vars)?);
            rest = &r[end + 1..];
        } else {
            let n = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            if n == 0 || rest.starts_with(|c: char| c.is_ascii_digit()) {
                out.push('$');
            } else {
                out.push_str(vars.get(&rest[..n]).map(String::as_str).unwrap_or(""));
                rest = &rest[n..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Index of the `}` that closes a `${` whose body starts `r`, skipping nested `${...}`.
fn closing(r: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in r.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn braced(expr: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let n = expr.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expr.len());
    let (name, op) = expr.split_at(n);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("`${{{expr}}}` does not start with a variable name"));
    }
    let val = vars.get(name);
    let set_nonempty = val.is_some_and(|v| !v.is_empty());
    let pick = |word: &str, cond: bool| -> Result<String, String> {
        Ok(if cond { val.cloned().unwrap_or_default() } else { interpolate(word, vars)? })
    };
    if op.is_empty() {
        return Ok(val.cloned().unwrap_or_default());
    }
    if let Some(w) = op.strip_prefix(":-") {
        return pick(w, set_nonempty);
    }
    if let Some(w) = op.strip_prefix('-') {
        return pick(w, val.is_some());
    }
    for (p, cond) in [(":?", set_nonempty), ("?", val.is_some())] {
        if let Some(msg) = op.strip_prefix(p) {
            return if cond {
                Ok(val.cloned().unwrap_or_default())
            } else {
                Err(format!("`{name}` is required: {}", if msg.is_empty() { "not set" } else { msg }))
            };
        }
    }
    Err(format!("`${{{expr}}}` uses an operator Den does not know (use :-, -, :? or ?)"))
}

/// Interpolates every string (not keys) in a YAML tree; `at` names where for errors.
pub fn interpolate_tree(v: &mut Value, vars: &BTreeMap<String, String>, at: &str) -> Result<(), (String, String)> {
    match v {
        Value::String(s) => *s = interpolate(s, vars).map_err(|e| (at.to_string(), e))?,
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, vars, &format!("{at}[{i}]"))?;
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                let key = crate::manifest::scalar_text(k);
                let path = if at.is_empty() { key } else { format!("{at}.{key}") };
                interpolate_tree(item, vars, &path)?;
            }
        }
        Value::Tagged(t) => interpolate_tree(&mut t.value, vars, at)?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_forms() {
        let vars: BTreeMap<String, String> =
            [("APP", "demo"), ("EMPTY", "")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let i = |s: &str| interpolate(s, &vars);
        assert_eq!(i("x-${APP}-$APP.y").unwrap(), "x-demo-demo.y");
        assert_eq!(i("$$APP costs $5").unwrap(), "$APP costs $5");
        assert_eq!(i("${NOPE:-d${APP}}|${EMPTY:-e}|${EMPTY-f}|${NOPE-g}").unwrap(), "ddemo|e||g");
        assert_eq!(i("${NOPE}").unwrap(), "");
        assert!(i("${NOPE:?set it}").unwrap_err().contains("set it"));
        assert!(i("${APP").unwrap_err().contains("not closed"));
        assert!(i("${APP/x/y}").unwrap_err().contains("operator"));
        let mut v: Value = serde_yaml_ng::from_str("a: {b: [x, '${APP}']}").unwrap();
        interpolate_tree(&mut v, &vars, "").unwrap();
        assert_eq!(v["a"]["b"][1].as_str(), Some("demo"));
        let mut v: Value = serde_yaml_ng::from_str("a: {b: [x, '${NOPE?}']}").unwrap();
        assert_eq!(interpolate_tree(&mut v, &vars, "").unwrap_err().0, "a.b[1]");
    }
}
