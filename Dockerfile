# Pareto: one image for web, worker and beat (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

RUN groupadd --system pareto \
    && useradd --system --gid pareto --home-dir /app --no-create-home --shell /usr/sbin/nologin pareto

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import subprocess, sys, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
subprocess.check_call([sys.executable, '-m', 'pip', 'install', *deps])"

# Code stays owned by root: the app user can read it, not change it.
COPY . .
# Editable, so that settings find templates/ and static/ beside the code in /app.
RUN pip install --no-deps -e . \
    && mkdir -p /app/var \
    && chown pareto:pareto /app/var

# Static files are collected at build time, so the running container needs no write access to them.
# The values below exist only for this build step: the key signs nothing and no database is contacted.
RUN PARETO_SECRET_KEY=collectstatic-at-build-time-only \
    DATABASE_URL=postgres://unused@localhost/unused \
    REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput --verbosity 0

USER pareto
EXPOSE 8000

CMD ["gunicorn", "controlplane.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", \
     "--graceful-timeout", "20", "--access-logfile", "-"]
