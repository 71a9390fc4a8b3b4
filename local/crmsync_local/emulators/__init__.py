"""CRM emulators (Salesforce, Dynamics 365) used by the tests, the benchmarks and the local demo."""
