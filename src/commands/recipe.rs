//! `trainer recipe`: the resolved recipe as TOML with each value's source, or (`--export F`) one
//! self-contained file with every script and the hashes of the model and data.

use anyhow::Result;

use crate::cli::RecipeCmdArgs;
use crate::recipe::RecipeInput;

/// Prints the annotated recipe, or writes the export and says what it holds.
pub fn recipe(args: &RecipeCmdArgs) -> Result<()> {
    let input = RecipeInput {
        config: args.recipe.config.clone(),
        sets: args.recipe.set.clone(),
        script: args.script.clone(),
        ..RecipeInput::default()
    };
    if let Some(out) = &args.export {
        crate::store::check_output_file(out, "--export")?;
        println!("exported {}", crate::export::write_export(&input, out)?);
        return Ok(());
    }
    let (layered, _) = crate::export::load_recipe(&input)?;
    layered.resolve()?;
    print!("{}", layered.annotated_toml()?);
    Ok(())
}
