//! Prints or writes the router's CRDs, generated from the Rust types.
//!
//! `crdgen` prints every CRD as one multi-document YAML stream;
//! `crdgen --out manifests/crds` writes one file per CRD, named after it.
//! The checked-in files are tested against this output (tests/crds_up_to_date).

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let out = match (args.next().as_deref(), args.next()) {
        (None, _) => None,
        (Some("--out"), Some(dir)) => Some(PathBuf::from(dir)),
        (Some("-h" | "--help"), _) => {
            println!("usage: crdgen [--out DIR]\n\nPrints the router.datum.net CRDs as YAML, or writes one file per CRD into DIR.");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("usage: crdgen [--out DIR]");
            return ExitCode::from(2);
        }
    };
    let rendered = match router_api::v1alpha1::render_crds() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("crdgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    match out {
        None => {
            for (_, yaml) in rendered {
                print!("---\n{yaml}");
            }
        }
        Some(dir) => {
            for (file, yaml) in rendered {
                let path = dir.join(file);
                if let Err(e) = std::fs::write(&path, yaml) {
                    eprintln!("crdgen: writing {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    ExitCode::SUCCESS
}
