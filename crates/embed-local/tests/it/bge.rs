//! bge-small-en-v1.5, the default local model: its profile (name, CLS pooling, query prefix)
//! is read from the `model.json` the fetch script writes, and retrieval works as it should.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use astrocyte_core::embed::dot;
use astrocyte_core::{EmbedPurpose, Embedder};
use astrocyte_embed_local::{LocalEmbedder, LocalEmbedderOptions};

fn bge() -> &'static LocalEmbedder {
    static EMBEDDER: OnceLock<LocalEmbedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        let repo_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let model_dir: PathBuf = repo_root.join("models/bge-small-en-v1.5");
        let status = Command::new("bash")
            .arg(repo_root.join("scripts/fetch-model.sh"))
            .arg(&model_dir)
            .status()
            .expect("bash runs the fetch script");
        assert!(status.success(), "scripts/fetch-model.sh failed: {status}");
        LocalEmbedder::load(&model_dir, LocalEmbedderOptions::default()).expect("bge loads")
    })
}

async fn one(text: &str, purpose: EmbedPurpose) -> Vec<f32> {
    bge()
        .embed(&[text.to_string()], purpose)
        .await
        .expect("embeds")
        .pop()
        .expect("one vector")
}

#[tokio::test]
async fn the_profile_names_the_model_and_its_shape() {
    assert_eq!(bge().model(), "bge-small-en-v1.5");
    assert_eq!(bge().dimension(), 384);
    let v = one("hello there", EmbedPurpose::Document).await;
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "{norm}");
}

#[tokio::test]
async fn queries_get_the_prefix_and_find_their_passage() {
    let query = "how do I bake bread";
    let as_query = one(query, EmbedPurpose::Query).await;
    let as_document = one(query, EmbedPurpose::Document).await;
    // The instruction prefix changes the query's vector; documents go in bare.
    assert!(dot(&as_query, &as_document) < 0.99);
    let recipe = one(
        "Mix flour, water, salt and yeast, let the dough rise, then bake it for 40 minutes.",
        EmbedPurpose::Document,
    )
    .await;
    let markets = one(
        "Stock markets fell sharply after the central bank raised rates.",
        EmbedPurpose::Document,
    )
    .await;
    let (relevant, unrelated) = (dot(&as_query, &recipe), dot(&as_query, &markets));
    assert!(relevant > unrelated + 0.2, "{relevant} vs {unrelated}");
}
