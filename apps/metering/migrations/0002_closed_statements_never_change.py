# A closed statement and its lines never change, whatever the caller: UPDATE/DELETE of a closed statement and
# INSERT/UPDATE/DELETE of a line of a closed statement raise in the database. (TRUNCATE, which only an operator or a
# test database flush runs, is not a row change and is not blocked.) Corrections are adjustment lines on a later,
# open statement.
from django.db import migrations

SQL = """
CREATE OR REPLACE FUNCTION metering_statement_closed_guard() RETURNS trigger AS $$
BEGIN
    IF OLD.status = 'closed' THEN
        RAISE EXCEPTION 'statement % is closed and cannot change (% refused)', OLD.id, TG_OP;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER metering_statement_closed
    BEFORE UPDATE OR DELETE ON metering_statement
    FOR EACH ROW EXECUTE FUNCTION metering_statement_closed_guard();

CREATE OR REPLACE FUNCTION metering_statementline_closed_guard() RETURNS trigger AS $$
DECLARE
    sid bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        sid := NEW.statement_id;
    ELSE
        sid := OLD.statement_id;
    END IF;
    IF EXISTS (SELECT 1 FROM metering_statement WHERE id = sid AND status = 'closed') THEN
        RAISE EXCEPTION 'statement % is closed: its lines cannot change (% refused)', sid, TG_OP;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.statement_id <> OLD.statement_id
       AND EXISTS (SELECT 1 FROM metering_statement WHERE id = NEW.statement_id AND status = 'closed') THEN
        RAISE EXCEPTION 'statement % is closed: lines cannot move into it', NEW.statement_id;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER metering_statementline_closed
    BEFORE INSERT OR UPDATE OR DELETE ON metering_statementline
    FOR EACH ROW EXECUTE FUNCTION metering_statementline_closed_guard();
"""

REVERSE = """
DROP TRIGGER IF EXISTS metering_statementline_closed ON metering_statementline;
DROP FUNCTION IF EXISTS metering_statementline_closed_guard();
DROP TRIGGER IF EXISTS metering_statement_closed ON metering_statement;
DROP FUNCTION IF EXISTS metering_statement_closed_guard();
"""


class Migration(migrations.Migration):
    dependencies = [("metering", "0001_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
