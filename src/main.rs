//! The command line: parse arguments, load the configuration, hand over to
//! `lifecycle`, and map how it ended to an exit code.

use jobengine::config::{Config, Flags};
use jobengine::error::ExitError;
use jobengine::lifecycle;
use std::path::PathBuf;

const USAGE: &str = "\
usage: jobengine serve   [--config FILE] [--listen ADDR] [--database URL] [--data-dir DIR]
       jobengine migrate [--config FILE] [--database URL] [--data-dir DIR]

Every configuration key can also be set as JOBENGINE_<KEY> or in the TOML
file; flags win over the environment, which wins over the file.";

fn main() {
    let _ = simplelog::TermLogger::init(
        log_level(),
        simplelog::ConfigBuilder::new()
            .set_target_level(simplelog::LevelFilter::Error)
            .build(),
        simplelog::TerminalMode::Stderr,
        simplelog::ColorChoice::Never,
    );
    if let Err(e) = run(std::env::args().skip(1).collect()) {
        log::error!("{e}");
        if matches!(e, ExitError::Usage(_)) {
            eprintln!("{USAGE}");
        }
        std::process::exit(e.code());
    }
}

fn log_level() -> simplelog::LevelFilter {
    match std::env::var("RUST_LOG")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "trace" => simplelog::LevelFilter::Trace,
        "debug" => simplelog::LevelFilter::Debug,
        "warn" => simplelog::LevelFilter::Warn,
        "error" => simplelog::LevelFilter::Error,
        _ => simplelog::LevelFilter::Info,
    }
}

fn run(args: Vec<String>) -> Result<(), ExitError> {
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (c.as_str(), rest),
        None => return Err(ExitError::Usage("no command given".into())),
    };
    if matches!(command, "-h" | "--help" | "help") {
        println!("{USAGE}");
        return Ok(());
    }
    let flags = parse_flags(rest)?;
    let config = Config::load(&flags, std::env::vars()).map_err(|e| ExitError::Usage(e.0))?;
    match command {
        "serve" => lifecycle::serve(flags, config),
        "migrate" => {
            if flags.listen.is_some() {
                return Err(ExitError::Usage("migrate takes no --listen".into()));
            }
            lifecycle::migrate(&config)
        }
        other => Err(ExitError::Usage(format!("unknown command '{other}'"))),
    }
}

fn parse_flags(args: &[String]) -> Result<Flags, ExitError> {
    let mut flags = Flags::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next().cloned())
                .ok_or_else(|| ExitError::Usage(format!("{name} needs a value")))
        };
        match name {
            "--config" => flags.config = Some(PathBuf::from(value()?)),
            "--listen" => flags.listen = Some(value()?),
            "--database" => flags.database = Some(value()?),
            "--data-dir" => flags.data_dir = Some(value()?),
            other => return Err(ExitError::Usage(format!("unknown argument '{other}'"))),
        }
    }
    Ok(flags)
}
