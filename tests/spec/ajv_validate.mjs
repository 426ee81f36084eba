// Validates JSON documents against JSON Schemas with ajv, for tests/spec/test_ajv_agreement.py.
//
// Usage: node ajv_validate.mjs NODE_MODULES_PARENT < pairs.json
// NODE_MODULES_PARENT is the folder whose node_modules holds ajv and ajv-formats (the project's `.node/`).
// stdin: a JSON array of {"schema": SCHEMA_FILE, "document": DOCUMENT_FILE}; each file is read and
// parsed here with JSON.parse, as any JavaScript consumer of the published schemas would.
// stdout: a JSON array, in the same order, of {"valid": true|false, "errors": [...]}, or
// {"parse_error": MESSAGE} when the document is not JSON for JSON.parse, or {"compiled": true} for a
// request without "document" (the schema alone). Each schema is compiled once, with the
// draft its `$schema` declares; an unknown draft or a schema ajv rejects exits with status 2.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { resolve } from "node:path";

const require = createRequire(resolve(process.argv[2], "package.json"));
const addFormats = require("ajv-formats").default;
const DRAFTS = {
  "https://json-schema.org/draft/2020-12/schema": require("ajv/dist/2020").default,
};

const compiled = new Map();

function validator(schemaFile) {
  if (!compiled.has(schemaFile)) {
    const schema = JSON.parse(readFileSync(schemaFile, "utf8"));
    const Draft = DRAFTS[schema.$schema];
    if (Draft === undefined) {
      process.stderr.write(`${schemaFile}: no ajv class for $schema ${JSON.stringify(schema.$schema)}\n`);
      process.exit(2);
    }
    const ajv = new Draft({ strict: true, allErrors: true });
    addFormats(ajv);
    compiled.set(schemaFile, ajv.compile(schema));
  }
  return compiled.get(schemaFile);
}

const pairs = JSON.parse(readFileSync(0, "utf8"));
const verdicts = pairs.map(({ schema, document }) => {
  const validate = validator(schema);
  if (document === undefined) {
    return { compiled: true };
  }
  let value;
  try {
    value = JSON.parse(readFileSync(document, "utf8"));
  } catch (err) {
    return { parse_error: String(err.message) };
  }
  const valid = validate(value);
  return {
    valid,
    errors: valid ? [] : validate.errors.map((e) => `${e.instancePath || "/"} ${e.message}`),
  };
});
process.stdout.write(JSON.stringify(verdicts));
