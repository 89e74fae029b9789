//! Astrocyte's settings: every setting declared once in [`table`] (type, default, YAML path,
//! environment variables, flag, secrecy, example, doc), loaded by [`load`] with one precedence
//! (defaults < YAML < environment < flags), turned into each component's configuration by
//! [`convert`], and documented by [`docs`] from the same declarations.
#![deny(missing_docs)]

pub mod convert;
pub mod docs;
pub mod load;
pub mod table;
pub mod value;

pub use load::{load, load_yaml, Loaded, Origin, SettingsError, Sources};
pub use table::{default_data_dir, Settings, Spec, TABLE};
pub use value::EmbedderKind;
