//! The registry's records stored as JSON text (a version's audit, settings
//! and calibration, the registry's data spec), typed. The stored text is
//! kept as it was written: it is what the chain hashes and what verify
//! compares, so a record is never re-serialised on its way back, and a
//! field a newer amun added is neither lost nor called an edit.
use crate::train::Recipe;
use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::marker::PhantomData;

/// A `T` stored as JSON text: the text as written, parsed on demand.
pub struct JsonText<T> {
    text: String,
    of: PhantomData<fn() -> T>,
}

impl<T: Serialize> JsonText<T> {
    /// `value` as JSON, its fields in declaration order.
    pub fn new(value: &T) -> JsonText<T> {
        JsonText::from_text(serde_json::to_string(value).expect("records serialise"))
    }

    /// `value` as JSON with every object's keys sorted (through
    /// `serde_json::Value`): how the registry has always written settings
    /// and calibration records.
    pub fn sorted(value: &T) -> JsonText<T> {
        let v = serde_json::to_value(value).expect("records serialise");
        JsonText::from_text(v.to_string())
    }
}

impl<T: DeserializeOwned> JsonText<T> {
    /// The record, parsed.
    pub fn parse(&self) -> serde_json::Result<T> {
        serde_json::from_str(&self.text)
    }
}

impl<T> JsonText<T> {
    /// The text as stored, unchecked.
    pub(crate) fn from_text(text: String) -> JsonText<T> {
        JsonText {
            text,
            of: PhantomData,
        }
    }

    /// The text as stored.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The record as a JSON value, for output (`--json`, Python), where it
    /// is an object like any other rather than JSON text inside JSON; text
    /// that does not parse (an edited database) is shown as the string.
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| self.text.clone().into())
    }
}

/// A row as output shows it: serialised as stored, with each of its JSON
/// text fields (`fields`: name and value) replaced by the record itself.
pub(crate) fn nested<R: Serialize>(
    row: &R,
    fields: impl IntoIterator<Item = (&'static str, Option<serde_json::Value>)>,
) -> serde_json::Value {
    let mut v = serde_json::to_value(row).expect("records serialise");
    for (name, field) in fields {
        if let Some(obj) = v.as_object_mut()
            && obj.contains_key(name)
        {
            obj.insert(name.into(), field.unwrap_or(serde_json::Value::Null));
        }
    }
    v
}

impl<T> Clone for JsonText<T> {
    fn clone(&self) -> Self {
        JsonText::from_text(self.text.clone())
    }
}

impl<T> PartialEq for JsonText<T> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<T> std::fmt::Debug for JsonText<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.text, f)
    }
}

impl<T> std::fmt::Display for JsonText<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// As a JSON string of the text: the rows' canonical content (what the
/// chain hashes) holds these records as text.
impl<T> Serialize for JsonText<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de, T> Deserialize<'de> for JsonText<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(JsonText::from_text)
    }
}

impl<T> ToSql for JsonText<T> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.text.as_str()))
    }
}

impl<T> FromSql for JsonText<T> {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        v.as_str().map(|t| JsonText::from_text(t.to_string()))
    }
}

/// One request's calibration, as an apply records it in its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRecord {
    /// The calibration's record (`crate::unlearn::Calibration` as JSON;
    /// older amuns wrote other fields, which certificates still render).
    pub calibration: serde_json::Value,
    pub request: i64,
}

/// A version's settings: the method's (as it reports them), or for an
/// exact retrain the root's recipe and seed it repeated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VersionSettings {
    Retrain { recipe: Option<Recipe>, seed: u64 },
    Method(serde_json::Value),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as the registry of main (before these types) wrote them, cut
    /// from a registry it made: read and written again, byte for byte.
    #[test]
    fn stored_records_keep_their_bytes_and_parse() {
        let cal = JsonText::<Vec<CalibrationRecord>>::from_text(CALIBRATION.into());
        let recs = cal.parse().unwrap();
        assert_eq!(recs[0].request, 1);
        let c: crate::unlearn::Calibration =
            serde_json::from_value(recs[0].calibration.clone()).unwrap();
        assert_eq!(c.heldout_size, 100);
        assert_eq!(JsonText::sorted(&recs), cal);
        let retrain = JsonText::<VersionSettings>::from_text(RETRAIN_SETTINGS.into());
        let parsed = retrain.parse().unwrap();
        assert!(
            matches!(parsed, VersionSettings::Retrain { seed: 0, .. }),
            "{parsed:?}"
        );
        assert_eq!(JsonText::sorted(&parsed), retrain);
        let method = JsonText::<VersionSettings>::from_text(METHOD_SETTINGS.into());
        let parsed = method.parse().unwrap();
        assert!(matches!(parsed, VersionSettings::Method(_)), "{parsed:?}");
        assert_eq!(JsonText::sorted(&parsed), method);
        let audit = JsonText::<super::super::VersionAudit>::from_text(AUDIT.into());
        assert_eq!(JsonText::new(&audit.parse().unwrap()), audit);
        let data = JsonText::<crate::data::DataSpec>::from_text(DATA.into());
        assert_eq!(JsonText::new(&data.parse().unwrap()), data);
        // In a row's canonical content, a record is its text as a string.
        assert_eq!(
            serde_json::to_string(&audit).unwrap(),
            serde_json::to_string(AUDIT).unwrap()
        );
    }

    // Cut from the registry.db of a registry main (00f4c97) made: create,
    // a calibrated AMUN apply, an FT apply, an exact retrain (versions 2 and 4).
    const CALIBRATION: &str = r##"[{"calibration":{"accuracy_band":42.632670501949214,"allowed_drop":6.260462776996405,"auc_band":33.312982010362674,"before":{"confidence_ks":43.666666666666664,"forget_acc":100.0,"heldout_acc":83.0,"loss_auc":37.0,"retain_acc":88.94472361809045},"changes":[{"after":100.0,"band":42.632670501949214,"before":100.0,"measure":"forget accuracy %","target":83.0},{"after":83.0,"band":7.424508610841092,"before":83.0,"guard":6.260462776996405,"measure":"held-out accuracy %","target":83.0},{"after":88.94472361809045,"band":2.531866080747363,"before":88.94472361809045,"guard":6.260462776996405,"measure":"retain accuracy %","target":88.94472361809045},{"after":37.0,"band":33.312982010362674,"before":37.0,"measure":"loss AUC forget vs held-out %","target":50.0}],"chosen":{"epoch":0,"keeps_utility":true,"lr":0.0,"membership_ok":true,"probe":{"confidence_ks":43.666666666666664,"forget_acc":100.0,"heldout_acc":83.0,"loss_auc":37.0,"retain_acc":88.94472361809045},"reached":true,"score":17.0},"epochs_run":0,"epochs_worst_case":6,"forget_size":3,"heldout_size":100,"noise":21.75176219472923,"retain_drop":6.260462776996405,"seconds":5.740021179,"settings":{"climb_after":3.0,"level":0.05,"lrs":[0.01,0.1],"max_epochs":null,"max_utility_drop":null,"patience":2,"retain_budget":"full","retain_probe":1000,"rule":"accuracy","start":"own","walk":"continue"},"signal":"loss","table":[{"epoch":0,"keeps_utility":true,"lr":0.0,"membership_ok":true,"probe":{"confidence_ks":43.666666666666664,"forget_acc":100.0,"heldout_acc":83.0,"loss_auc":37.0,"retain_acc":88.94472361809045},"reached":true,"score":17.0}],"verdict":"not detectably memorised at this sample size: forget 100.0% vs target 83.0% (+17.0 ± 42.6), loss-AUC 37.0 (50 ± 33.3), at level 0.05","why":"the original passed every test before the first epoch and is kept: no epoch ran, nor the method's preparation (adversarial search, saliency mask)"},"request":1}]"##;
    const METHOD_SETTINGS: &str = r##"{"adv_only":false,"attack":{"attack":"pgd-l2","batch_size":128,"bf16":false,"bisect":6,"eps0":0.04,"fast_steps":20,"max_doublings":16,"overshoot":0.0,"refill":true,"search":"fast","steps":10},"finetune":{"augment":null,"batch_size":128,"epochs":3,"lr":0.01,"momentum":0.9,"precision":"auto","retain_budget":4.0,"retain_floor":0,"schedule":"step:1:0.1","stop_below":0.01,"weight_decay":0.0005},"salun_ratio":null}"##;
    const RETRAIN_SETTINGS: &str = r##"{"recipe":{"augment":false,"batch_size":32,"bf16":false,"channels_last":false,"epochs":2,"lr":0.02,"momentum":0.9,"nesterov":false,"schedule":"onecycle:0.25","weight_decay":0.0005},"seed":0}"##;
    const AUDIT: &str = r##"{"forgotten":6,"heldout":{"forget_acc":83.33333333333333,"retain_acc":86.86868686868686,"test_acc":86.0,"loss_auc":40.666666666666664,"confidence_ks":27.333333333333332,"test_images":100},"retrain":{"version":3,"retrain_version":4,"accuracy_gap":9.021324354657688,"avg_gap":null}}"##;
    const DATA: &str = r##"{"dataset":"mnist","train_limit":600,"test_limit":200}"##;
}
