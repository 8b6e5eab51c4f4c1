"""Local stand-ins for the paid WhatsApp APIs (Meta Cloud API, Twilio), used by tests and the demo."""
