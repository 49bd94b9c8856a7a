//! Where the model runs: `cpu` or `cuda:N`, parsed from the recipe or the command line and opened
//! once, with a clear error when this binary was built without the `cuda` feature.

use anyhow::Result;
use candle_core::Device;

use crate::error::user_error;

/// A device named in a recipe (`model.device`) or with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    /// A CUDA GPU by ordinal (`cuda` means `cuda:0`).
    Cuda(usize),
}

impl DeviceChoice {
    /// Parses `cpu`, `cuda` or `cuda:N`; `None` for anything else.
    pub fn parse(text: &str) -> Option<DeviceChoice> {
        match text {
            "cpu" => Some(DeviceChoice::Cpu),
            "cuda" => Some(DeviceChoice::Cuda(0)),
            _ => text
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda),
        }
    }

    /// Opens the device. A CUDA device in a binary built without the `cuda` feature, or one the
    /// driver cannot open, is a user error naming `origin` (the recipe key or flag).
    pub fn open(self, origin: &str) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(n) => {
                if !cfg!(feature = "cuda") {
                    return Err(user_error(format!(
                        "{origin} = \"cuda:{n}\": this binary was built without CUDA \
                         (rebuild with `cargo build --release --features cuda`)"
                    )));
                }
                Device::new_cuda(n).map_err(|e| {
                    user_error(format!("{origin} = \"cuda:{n}\": cannot open the GPU: {e}"))
                })
            }
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_print_back() {
        assert_eq!(DeviceChoice::parse("cpu"), Some(DeviceChoice::Cpu));
        assert_eq!(DeviceChoice::parse("cuda"), Some(DeviceChoice::Cuda(0)));
        assert_eq!(DeviceChoice::parse("cuda:3"), Some(DeviceChoice::Cuda(3)));
        assert_eq!(DeviceChoice::parse("cuda:x"), None);
        assert_eq!(DeviceChoice::parse("gpu"), None);
        assert_eq!(DeviceChoice::Cuda(1).to_string(), "cuda:1");
    }
}
