import os
from clearance_client import Client, ClearanceRetriever

client = Client(os.environ["CLEARANCE_URL"], token=os.environ["CLEARANCE_TOKEN"])
answer = client.search("login timeout", top_k=5)  # results, status, exact, audit_id
for d in ClearanceRetriever(client, top_k=5).invoke("login timeout"):
    print(d.metadata["ticket_id"], d.metadata["status"], d.metadata["audit_id"])
