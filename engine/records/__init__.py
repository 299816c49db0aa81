"""The records database (SQL): what a survey exists to produce and what compliance requires.

SQLite by default (var/canvass.db under the working directory), PostgreSQL when
DATABASE_URL says so. Tables live in schema.py only; migrations.py applies them.
"""
