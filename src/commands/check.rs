//! `trainer check --script S`: compile a script, list its hooks, run its `test_*` functions and
//! check a loss hook's gradient; `trainer check --api` prints the script API.

use anyhow::Result;

use crate::cli::CheckArgs;
use crate::error::user_error;
use crate::recipe::{self, RecipeInput};
use crate::script::run_check;

/// Prints the check report; a failed check is a user error.
pub fn check(args: &CheckArgs) -> Result<()> {
    let Some(script) = &args.script else {
        print!("{}", crate::script::api_reference());
        return Ok(());
    };
    let input = RecipeInput {
        config: args.recipe.config.clone(),
        sets: args.recipe.set.clone(),
        ..RecipeInput::default()
    };
    let recipe = recipe::load(&input)?.resolve()?;
    let report = run_check(script, &recipe.script, &recipe.loss, args.seed)?;
    println!("{}", report.render());
    if !report.passed() {
        return Err(user_error(format!("{}: check failed", report.file)));
    }
    Ok(())
}
