//! Secrets in what the host shows: the values of a run's secret
//! arguments replaced by `***` in text and JSON, before anything is cut,
//! shown, journaled or reported.

/// Replaces secret values with `***` in text.
#[derive(Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: Vec<String>) -> Redactor {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so a secret containing another is hidden whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn text(&self, text: String) -> String {
        if !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return text;
        }
        self.secrets
            .iter()
            .fold(text, |t, s| t.replace(s.as_str(), "***"))
    }

    /// Hide secrets in every string (and key) of a JSON document.
    pub fn json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => *s = self.text(std::mem::take(s)),
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.json(&mut v);
                    map.insert(self.text(k), v);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_hidden_in_data_keys_and_values() {
        let r = Redactor::new(vec!["s3cret".into()]);
        let mut v = serde_json::json!({"key s3cret": ["x s3cret y", 1, {"n": "s3cret"}]});
        r.json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"key ***": ["x *** y", 1, {"n": "***"}]})
        );
    }
}
