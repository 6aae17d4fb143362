use super::print_json;
use amun::unlearn::METHODS;
use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct MethodsArgs {
    /// Print every method's default settings as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: MethodsArgs) -> Result<()> {
    if a.json {
        let v: serde_json::Map<String, serde_json::Value> = METHODS
            .iter()
            .map(|e| {
                (
                    e.name.to_string(),
                    serde_json::json!({ "summary": e.summary, "defaults": (e.defaults)() }),
                )
            })
            .collect();
        return print_json(&v);
    }
    for e in METHODS {
        super::outln!("{:<12} {}", e.name, e.summary);
        super::outln!("{:<12} defaults: {}", "", (e.defaults)());
    }
    Ok(())
}
