# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
# The sampler page `make app` serves with Voilà, which shows only the outputs: one line
# saying what the run is, then notebook 06's sampler panel (hipgen_utils.app.sampler_page).
PROFILE = None  # None -> $HIPGEN_PROFILE, else "demo"; or "full" / "demo" / "ci"
RUN_DIR = None  # None -> $HIPGEN_RUN_DIR, else runs/<profile>

# %%
from hipgen_utils.app import sampler_page

sampler_page(PROFILE, RUN_DIR)
