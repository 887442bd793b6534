"""Web processes do not load the machine-learning stack: workers do the ML (issue: one million rows, item 2).

Imported in a fresh interpreter, as a gunicorn worker would: the URL configuration (every view and API module)
and the WSGI application must not pull in torch, transformers, peft, accelerate, spaCy or Presidio.
"""

import json
import os
import subprocess
import sys

HEAVY = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "spacy",
    "thinc",
    "presidio_analyzer",
    "presidio_anonymizer",
    "sentence_transformers",
)

SCRIPT = """
import json, sys
import django
django.setup()
import projectsite.urls, projectsite.wsgi
from django.urls import get_resolver
get_resolver().url_patterns  # every view module the URLs name is imported
import curation.forms_review, curation.apis_review, training.forms, evaluation.forms
print(json.dumps(sorted(name for name in %r if name in sys.modules)))
"""


def test_the_url_configuration_loads_no_machine_learning_library():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "projectsite.settings_test"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT % (HEAVY,)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [], f"A web process imports {', '.join(loaded)}: import it inside the function that needs it."


def test_the_detector_still_loads_on_first_use():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "projectsite.settings_test"}
    script = (
        "import sys; from curation import pii; assert 'presidio_analyzer' not in sys.modules; "
        "pii.PiiEngine; from curation.pii import resolve_overlaps; print('presidio_analyzer' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "True"
