//! Evaluations of a model on a dataset: per-sample outputs beside the
//! predictions and accuracies of [`crate::model::predict`].
use crate::model::Classifier;
use tch::{Device, Kind, Tensor};

pub use crate::model::predict::{
    Accuracy, EVAL_BATCH, accuracy, logits, logits_reporting, predictions,
};

/// One model's output on every sample of a dataset: what a user compares
/// with their own stack (`amun eval --per-sample`).
pub struct PerSample {
    /// 0 for a training row, 1 for a test row.
    pub split: Vec<u8>,
    /// Row within its split.
    pub index: Vec<i64>,
    pub label: Vec<i64>,
    pub pred: Vec<i64>,
    /// Softmax probability of the true label.
    pub confidence: Vec<f64>,
    /// Cross-entropy of the true label.
    pub loss: Vec<f64>,
    /// 1 for a training row in the forget set (when one was given).
    pub forget: Vec<u8>,
    /// `[N, K]` f32 logits.
    pub logits: Tensor,
}

/// The per-sample output of `model` on the training then the test split;
/// `forget` marks its rows.
pub fn per_sample(
    model: &Classifier,
    data: &crate::data::Dataset,
    forget: Option<&[i64]>,
) -> PerSample {
    let mut out = PerSample {
        split: Vec::new(),
        index: Vec::new(),
        label: Vec::new(),
        pred: Vec::new(),
        confidence: Vec::new(),
        loss: Vec::new(),
        forget: Vec::new(),
        logits: Tensor::zeros([0], (Kind::Float, Device::Cpu)),
    };
    let mut all = Vec::new();
    for (s, split) in [(0u8, &data.train), (1u8, &data.test)] {
        let l = logits(model, &split.images);
        let y = split.labels.to_device(Device::Cpu);
        let n = split.len();
        out.split.extend(std::iter::repeat_n(s, n));
        out.index.extend(0..n as i64);
        out.label.extend(split.label_vec());
        out.pred
            .extend(Vec::<i64>::try_from(l.argmax(1, false)).unwrap_or_default());
        out.confidence.extend(
            Vec::<f64>::try_from(
                l.softmax(1, Kind::Double)
                    .gather(1, &y.view([-1, 1]), false)
                    .flatten(0, -1),
            )
            .unwrap_or_default(),
        );
        out.loss.extend(
            Vec::<f64>::try_from(
                l.cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::None, -100, 0.0)
                    .to_kind(Kind::Double),
            )
            .unwrap_or_default(),
        );
        out.forget.extend(
            (0..n as i64)
                .map(|i| u8::from(s == 0 && forget.is_some_and(|f| f.binary_search(&i).is_ok()))),
        );
        all.push(l);
    }
    out.logits = Tensor::cat(&all, 0);
    out
}

impl PerSample {
    /// Writes the table to `path`, in the format its extension names:
    /// `.csv` (a header, one row per sample: split, index, label, pred,
    /// confidence, loss, forget, logit_0…), `.npy` (a float32 matrix with
    /// those columns, split as 0/1) or `.safetensors` (one tensor per
    /// column, `logits` `[N,K]`). Written atomically.
    pub fn write(&self, path: &std::path::Path) -> crate::Result<()> {
        use crate::error::Error;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let k = self.logits.size().get(1).copied().unwrap_or(0) as usize;
        let logits = Vec::<f32>::try_from(self.logits.flatten(0, -1)).unwrap_or_default();
        let n = self.index.len();
        match ext {
            "csv" => {
                let mut s = String::from("split,index,label,pred,confidence,loss,forget");
                for c in 0..k {
                    s.push_str(&format!(",logit_{c}"));
                }
                s.push('\n');
                for i in 0..n {
                    s.push_str(&format!(
                        "{},{},{},{},{:.8},{:.8},{}",
                        if self.split[i] == 0 { "train" } else { "test" },
                        self.index[i],
                        self.label[i],
                        self.pred[i],
                        self.confidence[i],
                        self.loss[i],
                        self.forget[i]
                    ));
                    for c in 0..k {
                        s.push_str(&format!(",{}", logits[i * k + c]));
                    }
                    s.push('\n');
                }
                crate::fsutil::write_atomic(path, s.as_bytes())
            }
            "npy" => {
                let cols = 7 + k;
                let mut v = Vec::with_capacity(n * cols);
                for i in 0..n {
                    v.extend([
                        f32::from(self.split[i]),
                        self.index[i] as f32,
                        self.label[i] as f32,
                        self.pred[i] as f32,
                        self.confidence[i] as f32,
                        self.loss[i] as f32,
                        f32::from(self.forget[i]),
                    ]);
                    v.extend_from_slice(&logits[i * k..(i + 1) * k]);
                }
                let arr = ndarray::Array2::from_shape_vec((n, cols), v)
                    .map_err(|e| Error::format(path, e.to_string()))?;
                let tmp = crate::fsutil::TempPath::beside(path)?;
                ndarray_npy::write_npy(tmp.path(), &arr)
                    .map_err(|e| Error::format(path, format!("writing .npy: {e}")))?;
                tmp.commit()
            }
            "safetensors" => {
                let t = |name: &str, v: Tensor| (name.to_string(), v);
                crate::model::checkpoint::write_tensors(
                    path,
                    &[
                        t("split", Tensor::from_slice(&self.split)),
                        t("index", Tensor::from_slice(&self.index)),
                        t("label", Tensor::from_slice(&self.label)),
                        t("pred", Tensor::from_slice(&self.pred)),
                        t("confidence", Tensor::from_slice(&self.confidence)),
                        t("loss", Tensor::from_slice(&self.loss)),
                        t("forget", Tensor::from_slice(&self.forget)),
                        t("logits", self.logits.shallow_clone()),
                    ],
                )
            }
            _ => Err(Error::invalid(
                path.display().to_string(),
                "expected a file ending in .csv, .npy or .safetensors",
            )),
        }
    }
}
