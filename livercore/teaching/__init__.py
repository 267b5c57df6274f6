"""Teaching cases: one catalogue (stored examples, phantom recipes, a site's own cases), one
findings generator, and what the library and quiz pages show of a case. Streamlit-free."""
