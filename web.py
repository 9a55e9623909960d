"""The web process: tracking endpoints, API and dashboard. Run it with
``flask --app web run`` (trying out) or ``gunicorn 'web:app'`` (production)."""

from campaigns.web import create_app

app = create_app()
