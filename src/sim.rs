//! Simulated monitors: the pure model and devices from [`vigil_core::sim`],
//! plus [`find_scenario`], which reads a scenario file when the name is not
//! a built-in one (the core never touches files).

pub use vigil_core::sim::*;

/// A built-in scenario by name, or else the scenario file at that path.
pub fn find_scenario(name_or_path: &str) -> Result<Scenario, ScenarioError> {
    if let Some(s) = Scenario::builtin(name_or_path) {
        return s;
    }
    let text = std::fs::read_to_string(name_or_path).map_err(|source| ScenarioError::NotFound {
        name: name_or_path.to_owned(),
        builtins: Scenario::builtin_names().collect::<Vec<_>>().join(", "),
        cause: source,
    })?;
    Scenario::parse(&text, name_or_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_the_builtins() {
        let e = find_scenario("no-such-scenario-here")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-scenario-here"), "{e}");
        for name in Scenario::builtin_names() {
            assert!(e.contains(name), "{e}");
        }
    }
}
