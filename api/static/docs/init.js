// Swagger UI bootstrap for /docs (api/ops.py): a static file, so no inline script is needed.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#ui",
  deepLinking: true,
});
