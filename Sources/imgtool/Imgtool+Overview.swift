/// # imgtool: the command line
///
/// Parses argv and renders; nothing else. `Commands` holds one file per subcommand (ArgumentParser types whose
/// `run()` calls into ImageOps and QCow2), `Render` every human and JSON renderer and the terminal writer, and
/// `FastPath` the one table-driven parser that skips ArgumentParser's start-up for the plain forms of the commands
/// people run in loops. Reading and changing live in the two library targets.
