//! The `weft` command. Subcommands `serve`, `call` and `bench` arrive with the
//! drivers; until then it prints the method key of a component and method.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, component, method] if cmd == "key" => {
            println!("{}", weft_proto::MethodKey::new(component, method));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: weft key COMPONENT METHOD");
            ExitCode::from(2)
        }
    }
}
