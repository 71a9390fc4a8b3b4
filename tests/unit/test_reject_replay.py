"""`crmsync rejects replay` compares CRM ids as the CRM writes them (the connector's `normalize_id`): a reject
stored with a 15-character Salesforce id and the replay run's reject of the same record are one record."""

from crmsync.connectors.salesforce.connector import SalesforceConnector
from crmsync.services.rejects import RejectDesk

GIVEN = "001A0000006Vm9r"  # as a report exports it
ANSWERED = "001A0000006Vm9rIAC"  # as the import's run writes it


class Store:
    """The reject store's replay surface: a sync's rejects, a run's rejects, deleting replayed ones."""

    def __init__(self, rejects):
        self.stored = list(rejects)
        self.deleted = []

    def rejects(self, sync_id, *, run_id=None, records=True):
        return [r for r in self.stored if run_id is None or r["runId"] == run_id]

    def delete(self, sync_id, reject_ids):
        self.deleted += reject_ids
        return len(reject_ids)


def test_a_replayed_15_character_id_rejected_again_under_its_18_character_form_counts_as_rejected_again():
    store = Store([{"rejectId": "r1", "runId": "run-1", "operation": "import", "crmId": GIVEN}])
    given = []

    def run(sync_id, population):
        given.append(population["ids"])
        store.stored.append({"rejectId": "r2", "runId": "run-2", "operation": "import", "crmId": ANSWERED})
        return "run-2", {"status": "SUCCEEDED"}

    normalize_id = object.__new__(SalesforceConnector).normalize_id
    report = RejectDesk(store, None, "", None).replay("sf-contacts", "import", run, normalize_id=normalize_id)

    assert given == [[ANSWERED]]
    assert (report.records, report.rejected_again, report.applied) == (1, 1, 0)
