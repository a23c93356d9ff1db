//! How a configuration section is declared: once, as its keys with their doc line, flag,
//! environment variable, type and default. [`config_section!`] makes of that declaration
//!
//! - the resolved section (`Http`): typed values, `Default` from the declared defaults;
//! - its layer (`HttpLayer`): every key optional, deriving both the command line (clap) and the
//!   file (serde), so that the flag > environment > file > default order is one merge.

/// A section's name in the file and how to describe its keys.
pub trait Section: Default + serde::Serialize {
    /// The `[name]` of the section in the config file.
    const NAME: &'static str;
    /// Its keys, in declaration order.
    const KEYS: &'static [&'static str];
}

/// Declares a section: `name: Type = default` for a key that always has a value,
/// `name: Type` for one that may be unset (the resolved field is then an `Option`).
macro_rules! config_section {
    (
        $(#[doc = $section_doc:literal])*
        $name:literal => $section:ident, $layer:ident {
            $(
                $(#[doc = $doc:literal])*
                #[arg($($arg:tt)*)]
                $key:ident : $ty:ty $(= $default:expr)?
            ),* $(,)?
        }
    ) => {
        $(#[doc = $section_doc])*
        #[derive(Clone, Debug, PartialEq, serde::Serialize)]
        pub struct $section {
            $(
                $(#[doc = $doc])*
                pub $key: config_section!(@resolved $ty $(, $default)?),
            )*
        }

        impl Default for $section {
            fn default() -> Self {
                Self {
                    $($key: config_section!(@default $(, $default)?),)*
                }
            }
        }

        impl $crate::config::section::Section for $section {
            const NAME: &'static str = $name;
            const KEYS: &'static [&'static str] = &[$(stringify!($key)),*];
        }

        #[doc = concat!("The `[", $name, "]` keys one source sets: flags and environment, or the file.")]
        #[derive(clap::Args, serde::Deserialize, Clone, Debug, Default)]
        #[serde(deny_unknown_fields)]
        pub struct $layer {
            $(
                $(#[doc = $doc])*
                #[arg($($arg)*)]
                pub $key: Option<$ty>,
            )*
        }

        impl $layer {
            /// This layer's values, and `lower`'s where this one has none.
            pub fn over(self, lower: Self) -> Self {
                Self {
                    $($key: self.$key.or(lower.$key),)*
                }
            }

            /// The section, with the declared default for every key no layer set.
            pub fn resolve(self) -> $section {
                #[allow(unused_variables)]
                let defaults = $section::default();
                $section {
                    $($key: config_section!(@resolve self.$key, defaults.$key $(, $default)?),)*
                }
            }
        }
    };
    (@resolved $ty:ty, $default:expr) => { $ty };
    (@resolved $ty:ty) => { Option<$ty> };
    (@default , $default:expr) => { $default };
    (@default) => { None };
    (@resolve $value:expr, $fallback:expr, $default:expr) => { $value.unwrap_or($fallback) };
    (@resolve $value:expr, $fallback:expr) => { $value };
}

pub(crate) use config_section;
